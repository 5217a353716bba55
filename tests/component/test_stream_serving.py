"""GET/HEAD against the real server: statuses, headers and bytes, checked with httpx."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.component.conftest import ServerProcess, metric_samples, status_of
from tests.unit.stream.multipart import boundary_of, parse_byteranges
from tests.unit.stream.range_model import expected

pytestmark = pytest.mark.component

BIG = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (its data plane with 2 worker threads) for the module."""
    base = tmp_path_factory.mktemp("serving")
    root = base / "media"
    (root / "movies").mkdir(parents=True)
    (root / "movies" / "big.mp4").write_bytes(BIG)
    (root / "empty.webm").write_bytes(b"")
    (root / "one.ts").write_bytes(b"x")
    for name in ("a.m4s", "b.mkv", "c.mov", "d.m3u8", "e.mpd", "f.vtt", "g.bin"):
        (root / name).write_bytes(b"0123456789")
    (base / "keys").mkdir()
    proc = ServerProcess(root, base, env={"VOD_WORKERS": "2"})
    yield proc
    assert proc.terminate() == 0


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_whole_file(client: httpx.Client) -> None:
    r = client.get("/movies/big.mp4")
    assert r.status_code == 200
    assert r.content == BIG
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(BIG))
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["etag"].startswith('"')
    assert r.headers["last-modified"].endswith("GMT")


def test_head_has_headers_and_no_body(client: httpx.Client) -> None:
    r = client.head("/movies/big.mp4", headers={"Range": "bytes=0-1"})
    assert r.status_code == 200  # RFC 9110 14.2: Range is defined for GET only
    assert r.headers["content-length"] == str(len(BIG))
    assert r.content == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=-500", len(BIG) - 500, len(BIG) - 1),
        ("bytes=3000000-", 3000000, len(BIG) - 1),
        (f"bytes={len(BIG) - 1}-", len(BIG) - 1, len(BIG) - 1),
        (f"bytes=10-{len(BIG) * 2}", 10, len(BIG) - 1),
    ],
)
def test_single_ranges(client: httpx.Client, header: str, start: int, end: int) -> None:
    r = client.get("/movies/big.mp4", headers={"Range": header})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(BIG)}"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.content == BIG[start : end + 1]


def test_multiple_ranges_are_multipart(client: httpx.Client) -> None:
    r = client.get("/movies/big.mp4", headers={"Range": "bytes=0-9,-10,1000-1999,1500-2500"})
    assert r.status_code == 206
    assert int(r.headers["content-length"]) == len(r.content)
    parts = parse_byteranges(r.content, boundary_of(r.headers["content-type"]))
    # in the order requested; the two overlapping ranges merged in the place of the first
    assert [(s, e) for s, e, *_ in parts] == [(0, 9), (len(BIG) - 10, len(BIG) - 1), (1000, 2500)]
    for start, end, size, ctype, payload in parts:
        assert (size, ctype) == (len(BIG), "video/mp4")
        assert payload == BIG[start : end + 1]


@pytest.mark.parametrize(
    "header", ["bytes=abc", "items=0-5", "bytes=5-1", f"bytes=0-{len(BIG)},0-{len(BIG)}"]
)
def test_ignored_ranges_send_the_whole_file(client: httpx.Client, header: str) -> None:
    r = client.get("/movies/big.mp4", headers={"Range": header})
    assert r.status_code == 200
    assert r.content == BIG


def test_too_many_ranges_send_the_whole_file(client: httpx.Client) -> None:
    header = "bytes=" + ",".join(f"{i * 100}-{i * 100 + 1}" for i in range(17))
    r = client.get("/movies/big.mp4", headers={"Range": header})
    assert r.status_code == 200
    assert len(r.content) == len(BIG)


@pytest.mark.parametrize("header", [f"bytes={len(BIG)}-", "bytes=-0"])
def test_unsatisfiable(client: httpx.Client, header: str) -> None:
    r = client.get("/movies/big.mp4", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(BIG)}"
    assert r.json()["error"]["status"] == 416


def test_if_range(client: httpx.Client) -> None:
    full = client.head("/movies/big.mp4")
    etag, modified = full.headers["etag"], full.headers["last-modified"]
    hit = client.get("/movies/big.mp4", headers={"Range": "bytes=5-9", "If-Range": etag})
    assert (hit.status_code, hit.content) == (206, BIG[5:10])
    by_date = client.get("/movies/big.mp4", headers={"Range": "bytes=5-9", "If-Range": modified})
    assert by_date.status_code == 206
    stale = client.get("/movies/big.mp4", headers={"Range": "bytes=5-9", "If-Range": '"old"'})
    assert (stale.status_code, len(stale.content)) == (200, len(BIG))


def test_conditionals(client: httpx.Client) -> None:
    full = client.head("/movies/big.mp4")
    etag, modified = full.headers["etag"], full.headers["last-modified"]
    not_modified = client.get("/movies/big.mp4", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag
    assert not_modified.content == b""
    since = client.get("/movies/big.mp4", headers={"If-Modified-Since": modified})
    assert since.status_code == 304
    assert client.get("/movies/big.mp4", headers={"If-Match": '"nope"'}).status_code == 412
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get("/movies/big.mp4", headers={"If-Unmodified-Since": old}).status_code == 412
    assert client.head("/movies/big.mp4", headers={"If-Match": etag}).status_code == 200


HUGE_YEAR = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Modified-Since": HUGE_YEAR},
        {"If-Unmodified-Since": HUGE_YEAR},
        {"If-Modified-Since": "Mon, 32 Jan 2000 00:00:00 GMT"},
        {"Range": "bytes=5-9", "If-Range": HUGE_YEAR},  # no match: the whole file
    ],
)
def test_invalid_dates_are_ignored(client: httpx.Client, headers: dict[str, str]) -> None:
    """RFC 9110 13.1.3/13.1.4/13.1.5: an invalid date is ignored (If-Range: no match)."""
    r = client.get("/movies/big.mp4", headers=headers)
    assert (r.status_code, len(r.content)) == (200, len(BIG))
    assert r.content == BIG


def test_empty_and_one_byte_files(client: httpx.Client) -> None:
    empty = client.get("/empty.webm")
    assert (empty.status_code, empty.content, empty.headers["content-length"]) == (200, b"", "0")
    assert client.get("/empty.webm", headers={"Range": "bytes=0-"}).status_code == 416
    one = client.get("/one.ts", headers={"Range": "bytes=-1"})
    assert (one.status_code, one.content, one.headers["content-range"]) == (
        206,
        b"x",
        "bytes 0-0/1",
    )


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("a.m4s", "video/iso.segment"),
        ("b.mkv", "video/x-matroska"),
        ("c.mov", "video/quicktime"),
        ("d.m3u8", "application/vnd.apple.mpegurl"),
        ("e.mpd", "application/dash+xml"),
        ("f.vtt", "text/vtt; charset=utf-8"),
        ("one.ts", "video/mp2t"),
        ("empty.webm", "video/webm"),
        ("g.bin", "application/octet-stream"),
    ],
)
def test_content_types(client: httpx.Client, name: str, ctype: str) -> None:
    assert client.head("/" + name).headers["content-type"] == ctype


def test_no_directory_listing_and_json_errors(client: httpx.Client) -> None:
    for path in ("/", "/movies", "/movies/", "/missing.mp4"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {"error": {"status": 404, "message": "not found"}}
    r = client.request("PATCH", "/movies/big.mp4")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]


def content_length(head: bytes) -> int:
    line = next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    return int(line.split(b":", 1)[1])


def read_response(sock: socket.socket, buffered: bytes, head_only: bool) -> tuple[bytes, bytes]:
    """One response from ``sock`` (after ``buffered``): its head and body, and the bytes
    after it. ``head_only``: a response to HEAD, whose Content-Length announces no body."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, data = data.partition(b"\r\n\r\n")
    length = 0 if head_only else content_length(head)
    while len(data) < length:
        chunk = sock.recv(65536)
        assert chunk
        data += chunk
    return head + b"\r\n\r\n" + data[:length], data[length:]


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [("/missing.mp4", "", 404), ("/one.ts", 'If-Match: "nope"\r\n', 412)],
)
def test_head_errors_have_no_body(
    server: ServerProcess, path: str, extra: str, status: int
) -> None:
    """RFC 9110 9.3.2: a HEAD error keeps GET's Content-Length but sends no content, so the
    next response on the connection starts right after its head."""
    requests = (
        f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
        "GET /one.ts HTTP/1.1\r\nHost: x\r\n\r\n"
        f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
        "GET /one.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(requests.encode())
        rest = b""
        for _ in range(2):
            head, rest = read_response(sock, rest, head_only=True)
            assert status_of(head) == status
            assert content_length(head) > 0  # the length of the JSON error a GET gets
            got, rest = read_response(sock, rest, head_only=False)
            assert status_of(got) == 200
            assert got.endswith(b"\r\n\r\nx")
        while chunk := sock.recv(65536):
            rest += chunk
    assert rest == b""


def test_operational_endpoints(client: httpx.Client, server: ServerProcess) -> None:
    client.get("/movies/big.mp4", headers={"Range": "bytes=0-0,5-5"})
    client.get("/movies/big.mp4", headers={"Range": "bytes=-1"})
    with server.client() as ops:
        assert ops.get("/ping").json() == {"message": "pong"}
        assert ops.get("/healthz").status_code == 200
        assert ops.get("/readyz").json() == {"status": "ready"}
        text = ops.get("/metrics").text
    counted = metric_samples(text)
    assert counted['vod_range_requests_total{kind="multi"}'] >= 1
    assert counted['vod_range_requests_total{kind="suffix"}'] >= 1
    assert counted['vod_http_requests_total{method="GET",route="media",status_class="2xx"}'] >= 2
    assert "vod_http_request_duration_seconds_bucket" in text
    assert "vod_http_requests_in_flight" in text
    assert "vod_http_response_body_bytes_total" in text


def test_method_label_is_bounded(server: ServerProcess) -> None:
    """Clients choose the method; the metric label takes only the known ones, else "other"."""
    with server.client() as c:
        for method in ("PATCH", "PROPFIND", "PURGE", "MKCOL"):  # aiohttp's parser knows these
            assert c.request(method, "/one.ts").status_code == 405
        assert c.request("PURGE", "/ping").status_code == 405
        text = c.get("/metrics").text
    labels = set(re.findall(r'^vod_http_requests_total\{method="([^"]*)"', text, re.MULTILINE))
    assert "other" in labels
    assert labels <= {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH", "other"}


def test_access_log_carries_request_id_and_traceparent(
    client: httpx.Client, server: ServerProcess
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = client.get("/one.ts", headers={"traceparent": parent, "X-Request-Id": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    made = client.get("/one.ts")
    rid = made.headers["x-request-id"]

    def entry(request_id: str) -> dict[str, object]:
        for _ in range(100):
            for e in server.events("access"):
                if e["request_id"] == request_id:
                    return e
            import time

            time.sleep(0.05)
        raise AssertionError(request_id)

    logged = entry("req-42")
    assert logged["traceparent"] == parent
    assert (logged["status"], logged["bytes"], logged["path"]) == (200, 1, "/one.ts")
    created = entry(rid)
    assert str(created["traceparent"]).startswith("00-")
    assert len(str(created["traceparent"])) == 55
    json.dumps(created)


specs = st.one_of(
    st.tuples(st.integers(0, len(BIG) + 10), st.integers(0, 5000)).map(
        lambda t: f"{t[0]}-{t[0] + t[1]}"
    ),
    st.integers(0, len(BIG) + 10).map(lambda n: f"{n}-"),
    st.integers(0, 5000).map(lambda n: f"-{n}"),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(specs, min_size=1, max_size=5))
def test_property_live_answers_match_the_model(client: httpx.Client, items: list[str]) -> None:
    """Status, headers and bytes as the model predicts (a server that always answered 200
    with the whole file, or sorted the parts, fails)."""
    r = client.get("/movies/big.mp4", headers={"Range": "bytes=" + ",".join(items)})
    model = expected(items, len(BIG), 16)
    assert r.status_code == model.status, (items, model)
    assert int(r.headers["content-length"]) == len(r.content)
    if model.kind == "ignored":
        assert "content-range" not in r.headers
        assert r.content == BIG
    elif model.kind == "unsatisfiable":
        assert r.headers["content-range"] == f"bytes */{len(BIG)}"
    elif model.kind == "multi":
        parts = parse_byteranges(r.content, boundary_of(r.headers["content-type"]))
        assert [(start, end) for start, end, *_ in parts] == model.ranges
        for start, end, _size, _ctype, payload in parts:
            assert payload == BIG[start : end + 1]
    else:
        [(start, end)] = model.ranges
        assert r.headers["content-range"] == f"bytes {start}-{end}/{len(BIG)}"
        assert r.content == BIG[start : end + 1]


def test_memory_does_not_grow_with_file_size(tmp_path: Path, server: ServerProcess) -> None:
    """Stream 64 MiB through a slow-ish consumer; the workers' RSS barely moves (sendfile)."""
    big = server.media_root / "movies" / "huge.mp4"
    with open(big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    pids = [int(p) for p in {e["pid"] for e in server.events("access")} if p]

    def rss_kib() -> int:
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    before = rss_kib()
    with httpx.stream("GET", f"{server.url}/movies/huge.mp4", timeout=60) as r:
        received = sum(len(chunk) for chunk in r.iter_bytes(1 << 20))
    assert received == 64 * 1024 * 1024
    assert rss_kib() - before < 16 * 1024  # far less than the 64 MiB sent
    big.unlink()
