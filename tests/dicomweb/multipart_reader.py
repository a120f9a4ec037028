"""A strict reader of multipart/related answers for the tests (independent of pacsweb's writer)."""

import re


def read_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """[(headers, content)] of a multipart body, checking RFC 2046 framing as it goes."""
    assert content_type.startswith("multipart/related"), content_type
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, f"no boundary in {content_type!r}"
    boundary = match.group(1).encode()
    assert body.startswith(b"--" + boundary + b"\r\n"), body[:100]
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n"), body[-100:]
    inner = body[len(boundary) + 4 : -(len(boundary) + 8)]
    parts = []
    for raw in inner.split(b"\r\n--" + boundary + b"\r\n"):
        head, sep, content = raw.partition(b"\r\n\r\n")
        assert sep, "each part has a header and a blank line"
        headers = {}
        for line in head.decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content
