"""The fast path's strict request parser: what it takes, and what it leaves to aiohttp."""

from __future__ import annotations

import pytest

from vod_stream.fastpath import http_date_now, parse_simple_request, response_head

pytestmark = pytest.mark.unit

RESERVED = frozenset({"/ping", "/healthz", "/readyz", "/metrics"})


def parse(head: bytes):
    return parse_simple_request(head, RESERVED)


def test_plain_get_with_range_and_query():
    r = parse(
        b"GET /dir/a%20b.mp4?exp=1&kid=k&sig=a+b&exp=2 HTTP/1.1\r\nHost: x\r\n"
        b"Range:  bytes=0-1 \r\nRANGE: bytes=5-6\r\n\r\n"
    )
    assert r is not None
    assert (r.method, r.path, r.keep_alive) == ("GET", "/dir/a b.mp4", True)
    assert r.query == {"exp": "1", "kid": "k", "sig": "a b"}
    assert r.headers == {"host": "x", "range": "bytes=0-1"}  # the first of repeated fields


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HEAD /a HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        (b"GET /a HTTP/1.0\r\n\r\n", False),
        (b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    ],
)
def test_connection_persistence(head, keep_alive):
    r = parse(head)
    assert r is not None
    assert r.keep_alive is keep_alive


@pytest.mark.parametrize(
    "head",
    [
        b"PUT /a HTTP/1.1\r\n\r\n",
        b"OPTIONS /a HTTP/1.1\r\n\r\n",
        b"get /a HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/2.0\r\n\r\n",
        b"GET http://x/a HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET /a\xff HTTP/1.1\r\n\r\n",
        b"GET /%ff HTTP/1.1\r\n\r\n",
        b"GET /ping HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /admin/sign HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.1\nHost: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    ],
)
def test_left_to_aiohttp(head):
    assert parse(head) is None


def test_response_head():
    head = response_head(206, {"Content-Length": "2", "ETag": '"x"'}, 784111777.5)
    assert head == (
        b"HTTP/1.1 206 Partial Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b'Content-Length: 2\r\nETag: "x"\r\n\r\n'
    )
    assert http_date_now(784111778.0) == "Sun, 06 Nov 1994 08:49:38 GMT"
