"""A strict reader of ``multipart/byteranges`` bodies, used to check them byte for byte."""

from __future__ import annotations

import re

_CONTENT_RANGE = re.compile(rb"bytes (\d+)-(\d+)/(\d+)")


def boundary_of(content_type: str) -> str:
    kind, _, params = content_type.partition(";")
    assert kind.strip() == "multipart/byteranges", content_type
    name, _, value = params.strip().partition("=")
    assert name == "boundary"
    return value


def parse_byteranges(body: bytes, boundary: str) -> list[tuple[int, int, int, str, bytes]]:
    """Return (start, end, size, content type, payload) for every part; assert the framing."""
    delimiter = b"--" + boundary.encode()
    parts: list[tuple[int, int, int, str, bytes]] = []
    pos = 0
    while True:
        lead = delimiter if pos == 0 else b"\r\n" + delimiter
        assert body.startswith(lead, pos), body[pos : pos + 80]
        pos += len(lead)
        if body.startswith(b"--\r\n", pos):
            assert pos + 4 == len(body), "bytes after the closing delimiter"
            return parts
        assert body.startswith(b"\r\n", pos)
        head_end = body.index(b"\r\n\r\n", pos)
        headers = dict(line.split(b": ", 1) for line in body[pos + 2 : head_end].split(b"\r\n"))
        match = _CONTENT_RANGE.fullmatch(headers[b"Content-Range"])
        assert match, headers
        start, end, size = (int(g) for g in match.groups())
        pos = head_end + 4
        payload = body[pos : pos + end - start + 1]
        assert len(payload) == end - start + 1
        parts.append((start, end, size, headers[b"Content-Type"].decode(), payload))
        pos += len(payload)
