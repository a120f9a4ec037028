"""The tokens of patient links, derived from a server key that never enters the database.

``token = base62(HMAC-SHA512(key, "<Study Instance UID>:<generation>"))``, 64 characters of
``[0-9A-Za-z]``: staff can show a study's link again at any time, yet the database holds only the
token's SHA-256 digest, so a leaked backup opens nothing. A visit is looked up by that digest
through a unique index; no token text is ever compared character by character, so response times
say nothing about how much of a guess was right.
"""

import functools
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

TOKEN_LENGTH = 64
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
WELL_FORMED = re.compile(rf"[0-9A-Za-z]{{{TOKEN_LENGTH}}}")
# 62**64 is about 2**381. The HMAC has 512 bits, so reducing it modulo 62**64 leaves every token
# equally likely to within 2**-131.
_MODULUS = len(ALPHABET) ** TOKEN_LENGTH
_MIN_KEY_CHARS = 32


def derive_token(*, study_uid: str, generation: int) -> str:
    mac = hmac.new(server_key(), f"{study_uid}:{generation}".encode(), hashlib.sha512).digest()
    number = int.from_bytes(mac, "big") % _MODULUS
    digits = []
    for _ in range(TOKEN_LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(digits)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_well_formed(text: str) -> bool:
    return WELL_FORMED.fullmatch(text) is not None


def server_key() -> bytes:
    """The configured key (``PACSWEB_TOKEN_KEY``), else the key file, generated on first use."""
    configured = settings.TOKEN_KEY
    if configured:
        if len(configured) < _MIN_KEY_CHARS:
            raise ImproperlyConfigured(
                f"PACSWEB_TOKEN_KEY must have at least {_MIN_KEY_CHARS} characters"
            )
        return configured.encode()
    return _key_from_file(Path(settings.TOKEN_KEY_FILE))


@functools.cache
def _key_from_file(path: Path) -> bytes:
    if not path.exists():
        _create_key_file(path)
    key = path.read_text().strip()
    if len(key) < _MIN_KEY_CHARS:
        raise ImproperlyConfigured(
            f"the token key file {path} is damaged: it must hold at least {_MIN_KEY_CHARS} "
            "characters (restore it from the backup of the key)"
        )
    return key.encode()


def _create_key_file(path: Path) -> None:
    """Write a new key under ``path`` complete or not at all, even with several workers racing.

    The key goes to a private temporary file first and is then hard-linked to its final name,
    which fails if another process got there first; that process's key is the one kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fp:
            fp.write(secrets.token_hex(64))
            fp.flush()
            os.fsync(fp.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)
