"""Media types for DICOMweb: Accept headers, and multipart/related bodies (RFC 2387) both ways.

Clients differ in how they write parameters (OHIF sends ``type=application/octet-stream`` unquoted
or quoted, Weasis sends no spaces), so every parser here accepts quoted and unquoted values, with
or without spaces, and treats media type and parameter names case-insensitively.
"""

import functools
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

CRLF = b"\r\n"
READ_CHUNK = 256 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024

_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept or Content-Type header, e.g. ``multipart/related; type=...``."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)


def _split_top_level(header: str) -> list[str]:
    """Split an Accept header on commas that are not inside a quoted string."""
    items, current, quoted, escaped = [], [], False, False
    for char in header:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_media_type(text: str) -> MediaRange:
    """Parse one media type with parameters: names lower-cased, quotes removed."""
    main, _, rest = text.partition(";")
    params: dict[str, str] = {}
    for name, value in _PARAM.findall(";" + rest):
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name.lower()] = value
    q = 1.0
    if "q" in params:
        try:
            q = max(0.0, min(1.0, float(params.pop("q"))))
        except ValueError:
            q = 0.0
    return MediaRange(main.strip().lower(), params, q)


@functools.lru_cache(maxsize=128)
def parse_accept(header: str) -> tuple[MediaRange, ...]:
    """The media ranges of an Accept header, most preferred first (stable for equal q).

    Cached: a viewer sends the same header with each of a study's hundreds of frame requests.
    """
    ranges = [parse_media_type(item) for item in _split_top_level(header or "")]
    ranges = [r for r in ranges if r.q > 0 and r.type]
    return tuple(sorted(ranges, key=lambda r: -r.q))


def new_boundary() -> str:
    return secrets.token_hex(16)


def part_header(content_type: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """The delimiter and header lines of one part, ready for its content."""
    lines = [f"Content-Type: {content_type}", *(f"{name}: {value}" for name, value in extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def encode_parts(boundary: str, parts: Iterable[tuple[bytes, Iterable[bytes]]]) -> Iterator[bytes]:
    """Stream a multipart body: each part is (its header bytes, its content chunks).

    The body starts directly with the first delimiter (no preamble), which is what OHIF's
    frame parser expects: it takes the first ``--`` line as the boundary.
    """
    opening = f"--{boundary}\r\n".encode("ascii")
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    first = True
    for header, chunks in parts:
        yield (opening if first else delimiter) + header
        first = False
        yield from chunks
    if first:
        # An empty multipart body still needs its close delimiter (RFC 2046 5.1.1).
        yield f"--{boundary}--\r\n".encode("ascii")
    else:
        yield f"\r\n--{boundary}--\r\n".encode("ascii")


class MultipartError(ValueError):
    """The request body is not a well-formed multipart/related message."""


@dataclass
class ReceivedPart:
    headers: dict[str, str]
    file: BinaryIO  # A temporary file holding the part's content, positioned at 0.
    size: int

    @property
    def content_type(self) -> MediaRange:
        return parse_media_type(self.headers.get("content-type", ""))


def _parse_part_headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def iter_parts(
    stream: BinaryIO,
    boundary: str,
    *,
    max_bytes: int,
    temp_dir: str | None = None,
) -> Iterator[ReceivedPart]:
    """Read a multipart body from ``stream`` part by part, spooling each part to a temp file.

    Memory stays bounded by the read chunk whatever the part sizes. The body may start with a
    preamble or directly with ``--boundary``; anything after the close delimiter (OHIF leaves
    trailing zero bytes there) is ignored. ``max_bytes`` bounds the whole body.
    """
    if not boundary or len(boundary) > 70:
        raise MultipartError("the multipart boundary is missing or longer than 70 characters")
    dash_boundary = b"--" + boundary.encode("latin-1")
    delimiter = CRLF + dash_boundary
    # Prefixing CRLF lets a body that starts with the boundary match the delimiter like any other.
    buffer = bytearray(CRLF)
    total = 0
    eof = False

    def fill() -> bool:
        nonlocal total, eof
        if eof:
            return False
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            eof = True
            return False
        total += len(chunk)
        if total > max_bytes:
            raise MultipartError(f"the request body is larger than {max_bytes} bytes")
        buffer.extend(chunk)
        return True

    # Skip the preamble up to the first delimiter.
    while True:
        at = buffer.find(delimiter)
        if at >= 0:
            del buffer[: at + len(delimiter)]
            break
        keep = len(delimiter) - 1
        if len(buffer) > keep:
            del buffer[: len(buffer) - keep]
        if not fill():
            raise MultipartError("the body holds no part (the boundary never appears)")

    while True:
        # After a delimiter: "--" closes the body; otherwise optional whitespace then CRLF.
        while len(buffer) < 2 and fill():
            pass
        if buffer[:2] == b"--":
            return
        while (end := buffer.find(CRLF)) < 0:
            if len(buffer) > 1024 or not fill():
                raise MultipartError("a boundary line is not followed by CRLF")
        if buffer[:end].strip(b" \t"):
            raise MultipartError("unexpected text after a boundary")
        del buffer[: end + 2]
        while (end := buffer.find(CRLF + CRLF)) < 0 and not buffer.startswith(CRLF):
            if len(buffer) > MAX_PART_HEADER_BYTES:
                raise MultipartError("a part's header is too long")
            if not fill():
                raise MultipartError("the body ends inside a part's header")
        if buffer.startswith(CRLF):
            headers: dict[str, str] = {}
            del buffer[:2]
        else:
            headers = _parse_part_headers(bytes(buffer[:end]))
            del buffer[: end + 4]
        spool = tempfile.TemporaryFile(dir=temp_dir)  # noqa: SIM115 - handed to the caller.
        size = 0
        try:
            while True:
                at = buffer.find(delimiter)
                if at >= 0:
                    spool.write(buffer[:at])
                    size += at
                    del buffer[: at + len(delimiter)]
                    break
                # Keep a tail that could be the start of a delimiter split across reads.
                safe = len(buffer) - (len(delimiter) - 1)
                if safe > 0:
                    spool.write(buffer[:safe])
                    size += safe
                    del buffer[:safe]
                if not fill():
                    raise MultipartError("the body ends inside a part (no close delimiter)")
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        try:
            yield ReceivedPart(headers, spool, size)
        finally:
            spool.close()
