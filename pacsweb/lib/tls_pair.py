"""Checking an SSL certificate and private key before the web server is asked to use them."""

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

# A certificate chain or a key is a few kilobytes; anything far bigger is not one.
MAX_BYTES = 256 * 1024


class TLSPairError(ValueError):
    """The certificate or the key cannot be used; the message says why, for the admin.

    ``part`` is "certificate" or "key": the upload the admin has to replace.
    """

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class Certificate:
    subject: str
    not_after: datetime.datetime

    @property
    def expired(self) -> bool:
        return self.not_after <= datetime.datetime.now(tz=datetime.UTC)


def _load_certificate(data: bytes) -> x509.Certificate:
    if len(data) > MAX_BYTES:
        raise TLSPairError(
            "The certificate file is too big to be a certificate.", part="certificate"
        )
    try:
        if b"-----BEGIN" in data:
            # A chain file holds the server's certificate first, then the intermediates.
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise TLSPairError(
            "The certificate file is not a certificate (PEM or DER, usually .crt).",
            part="certificate",
        ) from exc


def _load_key(data: bytes):
    if len(data) > MAX_BYTES:
        raise TLSPairError("The key file is too big to be a private key.", part="key")
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except TypeError as exc:
        raise TLSPairError(
            "The private key is protected by a passphrase; the web server cannot start with "
            "it. Upload the key without a passphrase (openssl pkey -in key -out plain.key).",
            part="key",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TLSPairError(
            "The key file is not a private key (PEM or DER, usually .key).", part="key"
        ) from exc


def check_pair(certificate: bytes, key: bytes) -> Certificate:
    """Raise TLSPairError unless ``key`` is the private key of ``certificate``'s public key."""
    cert = _load_certificate(certificate)
    private_key = _load_key(key)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != private_key.public_key().public_bytes(*spki):
        raise TLSPairError(
            "The private key does not belong to the certificate: upload the key that was "
            "generated with this certificate's request.",
            part="key",
        )
    return Certificate(subject=cert.subject.rfc4514_string(), not_after=cert.not_valid_after_utc)
