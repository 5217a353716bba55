"""The fast path's request parser: plain GET/HEAD of media, nothing else.

A media player sends little but GETs with a Range header. Parsing those here and answering
them from the protocol (see ``protocol.ConnectionHandler``) skips aiohttp's per-request task,
request and response objects. Anything this strict parser does not accept (another method, a
body, ``Expect``, an upgrade, an operational route, odd syntax) is handed to aiohttp unchanged,
which then serves the rest of that connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote

_REQUEST_LINE = re.compile(rb"(GET|HEAD) (/[!-~]*) HTTP/1\.([01])")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([ -~\t]*?)[ \t]*")
_REFUSED_FIELDS = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"http2-settings"}
)
MAX_HEAD_BYTES = 16 * 1024
MAX_LINE_BYTES = 8190  # aiohttp's max_field_size


@dataclass(frozen=True, slots=True)
class SimpleRequest:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; the first of repeated fields
    keep_alive: bool


def parse_simple_request(head: bytes, reserved: frozenset[str]) -> SimpleRequest | None:
    """Parse a request head (ending with CRLF CRLF); ``None`` when aiohttp should take it."""
    lines = head[:-4].split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        return None
    method, target, minor = match.groups()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if len(line) > MAX_LINE_BYTES:
            return None  # aiohttp answers with its limits
        field = _FIELD.fullmatch(line)
        if field is None:  # obs-fold, bare CR/LF, control or non-ASCII bytes, bad names
            return None
        name = field.group(1).lower()
        if name in _REFUSED_FIELDS:
            return None
        headers.setdefault(name.decode(), field.group(2).decode())
    raw_path, _, raw_query = target.decode().partition("?")
    try:
        path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError:
        return None
    if path in reserved or path.startswith("/admin/"):
        return None
    query: dict[str, str] = {}
    if raw_query:
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, value)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if minor == b"1" else "keep-alive" in connection
    return SimpleRequest(method.decode(), path, query, headers, keep_alive)


_REASONS = {
    200: "OK",
    206: "Partial Content",
    304: "Not Modified",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
}
_date_cache: tuple[int, str] = (0, "")


def http_date_now(now: float) -> str:
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


def response_head(status: int, headers: dict[str, str], now: float) -> bytes:
    """Serialise a status line and header fields (values come from the server, not clients)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Date: {http_date_now(now)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
