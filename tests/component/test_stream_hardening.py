"""Hostile input against the live data plane: RFC 9112 framing and limits, pipelining, bounded
memory, timeouts, the drain deadline, and no 5xx for any bytes a client can send."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.component.conftest import (
    JWT_SECRET,
    ServerProcess,
    answered_5xx,
    make_token,
    raw_request,
    status_of,
)

pytestmark = pytest.mark.component

FILES = {"a.mp4": b"A" * 10, "b.mp4": b"B" * 20, "c.mp4": b"C" * 30}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("hardening")
    root = base / "media"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    (base / "keys").mkdir()
    (base / "keys" / "k1").write_bytes(b"hardening-key")
    proc = ServerProcess(
        root,
        base,
        env={"VOD_WORKERS": "2", "VOD_JWT_SECRET": JWT_SECRET, "VOD_HEADER_TIMEOUT_SECONDS": "5"},
    )
    yield proc
    assert proc.terminate() == 0


def responses(data: bytes, heads: tuple[int, ...] = ()) -> list[tuple[int, dict[str, str], bytes]]:
    """Split bytes read from a connection into (status, headers, body) by Content-Length;
    ``heads``: the indices of answers to HEAD (a Content-Length but no body)."""
    found: list[tuple[int, dict[str, str], bytes]] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:200]
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = 0 if len(found) in heads else int(headers.get("content-length", "0"))
        found.append((int(lines[0].split(" ")[1]), headers, rest[:length]))
        data = rest[length:]
    return found


def exchange(
    port: int, data: bytes, heads: tuple[int, ...] = ()
) -> list[tuple[int, dict[str, str], bytes]]:
    return responses(raw_request(port, data), heads)


def assert_json_error(found: tuple[int, dict[str, str], bytes], status: int) -> None:
    assert found[0] == status, found
    assert found[1]["content-type"] == "application/json"
    assert json.loads(found[2])["error"]["status"] == status


# -- size limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # request line
        (b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (  # all headers: each small, together over 32 KiB
            b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 800) for i in range(45))
            + b"\r\n",
            431,
        ),
        (  # too many fields
            b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
        ),
    ],
    ids=["request-line", "one-field", "all-fields", "field-count"],
)
def test_size_limits(server: ServerProcess, raw: bytes, status: int) -> None:
    [found] = exchange(server.port, raw)
    assert_json_error(found, status)
    assert found[1]["connection"] == "close"


def test_size_limit_applies_when_the_head_arrives_in_pieces(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(10):
            sock.sendall(b"v" * 1000)
            time.sleep(0.01)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    assert_json_error(responses(data)[0], 431)


# -- Host, line endings, HTTP/1.0 -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /a.mp4 HTTP/1.1\r\n\r\n",  # missing in HTTP/1.1
        b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",  # repeated
        b"GET /a.mp4 HTTP/1.0\r\nHost: x\r\nhost: x\r\n\r\n",  # repeated, any version
        b"GET /a.mp4 HTTP/1.1\r\nHost: a b\r\n\r\n",  # invalid value
    ],
)
def test_host_rules(server: ServerProcess, raw: bytes) -> None:
    [found] = exchange(server.port, raw)
    assert_json_error(found, 400)


def test_http10_without_host_is_served_and_closed(server: ServerProcess) -> None:
    [found] = exchange(server.port, b"GET /a.mp4 HTTP/1.0\r\n\r\n")
    assert (found[0], found[2], found[1]["connection"]) == (200, FILES["a.mp4"], "close")


def test_bare_lf_line_endings_are_accepted(server: ServerProcess) -> None:
    """RFC 9112 2.2: a recipient MAY recognise a single LF as a line terminator."""
    found = exchange(
        server.port,
        b"GET /a.mp4 HTTP/1.1\nHost: x\nRange: bytes=0-1\n\n"
        b"GET /b.mp4 HTTP/1.1\nHost: x\nConnection: close\n\n",
    )
    assert [(s, b) for s, _, b in found] == [(206, b"AA"), (200, FILES["b.mp4"])]


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n two\r\n\r\n",  # obs-fold
        b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",  # bare CR
        b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
        b"GET /a.mp4 HTTP/2.0\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ],
    ids=["obs-fold", "bare-cr", "space-in-name", "http2-version", "h2-preface"],
)
def test_malformed_heads_are_400(server: ServerProcess, raw: bytes) -> None:
    [found] = exchange(server.port, raw)
    assert_json_error(found, 400)


def test_http10_keep_alive(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /a.mp4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = b""
        while not first.endswith(FILES["a.mp4"]):
            first += sock.recv(65536)
        [(status, headers, body)] = responses(first)
        assert (status, headers["connection"].lower(), body) == (200, "keep-alive", FILES["a.mp4"])
        sock.sendall(b"GET /b.mp4 HTTP/1.0\r\n\r\n")  # no keep-alive: answered, then closed
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    [(status, headers, body)] = responses(rest)
    assert (status, headers["connection"], body) == (200, "close", FILES["b.mp4"])


# -- pipelining and smuggling ---------------------------------------------------------------


def test_pipelined_requests_in_order_then_400_for_the_bad_one(server: ServerProcess) -> None:
    raw = (
        b"GET /c.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /b.mp4 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\n"
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GARBAGE\r\n\r\n"
        b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"  # after the bad one: never answered
    )
    found = exchange(server.port, raw, heads=(1,))
    assert [f[0] for f in found] == [200, 200, 206, 200, 400]
    assert found[0][2] == FILES["c.mp4"]
    assert found[1][1]["content-length"] == "10"
    assert found[2][2] == b"BBBBB"
    assert json.loads(found[3][2]) == {"message": "pong"}
    assert_json_error(found[4], 400)


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5, 6\r\n",
        b"Content-Length: +5\r\n",
        b"Content-Length: 0x5\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
        b"Transfer-Encoding: xchunked\r\n",
        b"Transfer-Encoding : chunked\r\n",
    ],
)
def test_ambiguous_framing_is_refused_and_closes(server: ServerProcess, framing: bytes) -> None:
    """No request smuggling: a body whose length two parsers could read differently is a 400,
    and the connection closes (the bytes after it are never taken for a request)."""
    smuggled = b"GET /b.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = b"POST /admin/sign HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n0\r\n\r\n" + smuggled
    found = exchange(server.port, raw)
    assert len(found) == 1, found
    assert_json_error(found[0], 400)


def test_http10_chunked_is_refused(server: ServerProcess) -> None:
    raw = b"PUT /x.mp4 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert_json_error(exchange(server.port, raw)[0], 400)


def test_get_with_a_body_is_served_and_the_body_skipped(server: ServerProcess) -> None:
    raw = (
        b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nGET /b.mp4 X"
        b"GET /c.mp4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /b.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    found = exchange(server.port, raw)
    assert [(s, b) for s, _, b in found] == [
        (200, FILES["a.mp4"]),
        (200, FILES["c.mp4"]),
        (200, FILES["b.mp4"]),
    ]


def test_chunked_upload_through_the_proxy(server: ServerProcess) -> None:
    raw = (
        b"PUT /up/chunked.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + make_token().encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        + b"GET /up/chunked.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    found = exchange(server.port, raw)
    assert [f[0] for f in found] == [201, 200]
    assert found[1][2] == b"hello world"


# -- memory, send timeout -------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(ln.split()[1]) for ln in status if ln.startswith("VmRSS:"))


def test_memory_is_bounded_when_a_client_pipelines_and_never_reads(
    server: ServerProcess,
) -> None:
    """Reading pauses while responses wait to be sent: 40 MB of pipelined requests from a
    client that reads nothing cost the data plane a bounded amount of memory, and the server
    keeps serving others meanwhile."""
    pid = int(server.wait_for_event("listening")["dataplane_pid"])
    before = rss_kib(pid)
    request = b"HEAD /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"
    burst = request * 10_000
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(0.5)
        deadline = time.monotonic() + 8
        while sent < 40_000_000 and time.monotonic() < deadline:
            try:
                sent += sock.send(burst)
            except TimeoutError:
                break  # the server stopped reading: its buffers and ours are full
        grown = rss_kib(pid) - before
        with httpx.Client(base_url=server.url, timeout=5) as other:
            assert other.get("/a.mp4").content == FILES["a.mp4"]
    assert sent < 40_000_000, "the server kept reading although nothing was read back"
    assert grown < 8 * 1024, f"the data plane grew by {grown} KiB"


def test_send_timeout_runs_between_writes_not_over_the_transfer(start_server, tmp_path) -> None:
    """A client that reads slowly but steadily is not cut, although the whole transfer lasts
    several times VOD_SEND_TIMEOUT_SECONDS (nginx's send_timeout)."""
    root = tmp_path / "media"
    root.mkdir()
    payload = os.urandom(6 * 1024 * 1024)
    (root / "slow.mp4").write_bytes(payload)
    server: ServerProcess = start_server(media_root=root, env={"VOD_SEND_TIMEOUT_SECONDS": "1"})
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /slow.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(256 * 1024):
            data += chunk
            time.sleep(0.05)  # about 1.5-5 MB/s: the transfer takes several seconds
        took = time.monotonic() - started
    [(status, _, body)] = responses(data)
    assert took > 2, "the transfer should outlast the send timeout"
    assert (status, body == payload) == (200, True)
    assert server.events("send timeout") == []


# -- drain deadline -------------------------------------------------------------------------


def test_drain_never_exceeds_its_deadline(start_server, tmp_path: Path) -> None:
    """SIGTERM with a stalled download and a stalled upload (proxied to Python): /readyz fails
    first, and the server exits by drain delay + grace (+ a small margin), not later."""
    root = tmp_path / "media"
    root.mkdir()
    with open(root / "big.mp4", "wb") as handle:
        handle.truncate(256 * 1024 * 1024)
    server: ServerProcess = start_server(
        media_root=root,
        env={
            "VOD_DRAIN_DELAY_SECONDS": "1",
            "VOD_SHUTDOWN_GRACE_SECONDS": "2",
            "VOD_JWT_SECRET": JWT_SECRET,
            "VOD_BODY_TIMEOUT_SECONDS": "60",
        },
    )
    download = socket.create_connection(("127.0.0.1", server.port))
    download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    download.sendall(b"GET /big.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
    download.recv(100)
    upload = socket.create_connection(("127.0.0.1", server.port))
    upload.sendall(
        b"PUT /stalled.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + make_token().encode()
        + b"\r\nContent-Length: 1000000\r\n\r\npart"
    )
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(15)
    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert server.process.wait(30) == 0
    took = time.monotonic() - started
    download.close()
    upload.close()
    assert 2.5 < took < 1 + 2 + 1.5, took
    assert not (root / "stalled.mp4").exists()


# -- no 5xx for any client input ------------------------------------------------------------


def no_server_errors(server: ServerProcess) -> None:
    assert answered_5xx(httpx.get(f"{server.url}/metrics", timeout=10).text) == {}


fuzz = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fuzz
@given(data=st.binary(max_size=300))
def test_fuzz_request_heads(server: ServerProcess, data: bytes) -> None:
    """Arbitrary bytes, alone and after a valid request line: an answer below 500, or none."""
    for raw in (data + b"\r\n\r\n", b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\n" + data + b"\r\n\r\n"):
        response = raw_request(server.port, raw, timeout=3)
        if response:
            assert status_of(response) < 500, (raw, response[:200])


FUZZED_HEADERS = [
    *(b"Range", b"If-Range", b"If-Match", b"If-None-Match", b"If-Modified-Since"),
    *(b"If-Unmodified-Since", b"X-Request-Id", b"traceparent", b"Origin", b"Authorization"),
]
header_values = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@fuzz
@given(
    name=st.sampled_from(FUZZED_HEADERS),
    value=header_values,
    method=st.sampled_from([b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"]),
)
def test_fuzz_header_values(
    server: ServerProcess, name: bytes, value: bytes, method: bytes
) -> None:
    raw = (
        method
        + b" /a.mp4 HTTP/1.1\r\nHost: x\r\n"
        + name
        + b": "
        + value
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    response = raw_request(server.port, raw, timeout=5)
    assert response, raw
    assert status_of(response) < 500, (raw, response[:300])


@fuzz
@given(
    exp=st.text(max_size=15) | st.integers(-(10**15), 10**15).map(str),
    kid=st.text(max_size=10) | st.just("k1"),
    sig=st.text(max_size=50),
    pfx=st.none() | st.text(max_size=10),
)
def test_fuzz_signed_url_parameters(
    start_signed: ServerProcess, exp: str, kid: str, sig: str, pfx: str | None
) -> None:
    query = f"exp={quote(exp)}&kid={quote(kid)}&sig={quote(sig)}"
    if pfx is not None:
        query += f"&pfx={quote(pfx)}"
    r = httpx.get(f"{start_signed.url}/a.mp4?{query}", timeout=5)
    assert r.status_code == 403, (query, r.status_code)
    assert r.json()["error"]["status"] == 403


@fuzz
@given(token=st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
def test_fuzz_jwt(server: ServerProcess, token: bytes) -> None:
    raw = (
        b"PUT /fuzz.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token
        + b"\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    )
    response = raw_request(server.port, raw, timeout=5)
    assert response, raw
    assert status_of(response) in (400, 401), (raw, response[:300])


@pytest.fixture(scope="module")
def start_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("signed")
    root = base / "media"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"signed")
    (base / "keys").mkdir()
    (base / "keys" / "k1").write_bytes(b"fuzz-key")
    proc = ServerProcess(root, base, env={"VOD_SIGNED_URLS": "true"})
    yield proc
    no_server_errors(proc)
    assert proc.terminate() == 0


def test_traceparent_and_request_id_rules(server: ServerProcess) -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    bad = [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "garbage",
    ]
    ids = []
    with server.client() as c:
        kept = c.get("/a.mp4", headers={"traceparent": good, "X-Request-Id": "req-7"})
        assert kept.headers["x-request-id"] == "req-7"
        for value in bad:
            r = c.get("/a.mp4", headers={"traceparent": value, "X-Request-Id": "bad id!"})
            ids.append(r.headers["x-request-id"])
    assert "bad id!" not in ids
    assert len(set(ids)) == len(ids)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = {e["request_id"]: e for e in server.events("access")}
        if "req-7" in logged and all(i in logged for i in ids):
            break
        time.sleep(0.05)
    assert logged["req-7"]["traceparent"] == good
    for request_id in ids:
        made = str(logged[request_id]["traceparent"])
        assert made not in bad
        assert len(made) == 55
        assert made.startswith("00-")


def test_connection_threads_do_not_leak(server: ServerProcess) -> None:
    """Many short connections, some cut mid-request: the server ends with no connection held."""

    def churn() -> None:
        for i in range(50):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                if i % 2:
                    sock.sendall(b"GET /a.mp4 HTTP/1.1\r\nHost")  # cut mid-head
                else:
                    sock.sendall(b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
                    sock.recv(100)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    time.sleep(0.3)
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    line = next(ln for ln in text.splitlines() if ln.startswith("vod_http_requests_in_flight "))
    assert float(line.split()[-1]) == 0.0  # none held (the scrape itself is not counted)


def test_expect_100_continue_through_the_proxy(server: ServerProcess) -> None:
    """The application's interim 100 reaches the client before it sends the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"PUT /up/expect.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + make_token().encode()
            + b"\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        final = b""
        while b"\r\n\r\n" not in final:
            final += sock.recv(65536)
    assert status_of(final) == 201
    assert (server.media_root / "up" / "expect.mp4").read_bytes() == b"hello"


def test_no_5xx_after_all_of_the_above(server: ServerProcess) -> None:
    """Last in this module (pytest keeps file order): nothing above was answered with a 5xx."""
    no_server_errors(server)
    assert [e for e in server.logs if e.get("level") == "error"] == []
