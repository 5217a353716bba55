"""Graceful shutdown, timeouts, the connection cap and metrics across worker processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.component.conftest import (
    ServerProcess,
    answered_5xx,
    metric_samples,
    raw_response_head,
    status_of,
)
from vod_stream.metrics import UPLOAD_FAILURE_REASONS

pytestmark = pytest.mark.component

SIZE = 48 * 1024 * 1024


def sparse_media_root(tmp_path: Path, size: int) -> Path:
    """A media root holding `big.mp4`: `size` zero bytes, sparse (no disk used)."""
    root = tmp_path / "media"
    root.mkdir()
    with open(root / "big.mp4", "wb") as handle:
        handle.truncate(size)
    return root


def slow_download(port: int, path: str, result: dict[str, object], rate: int) -> None:
    """Read a GET response at about ``rate`` bytes/s; record its body's length and digest."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        digest = hashlib.sha256(body)
        received = len(body)
        result["started"] = True
        while received < length:
            chunk = sock.recv(min(65536, length - received))
            if not chunk:
                break
            digest.update(chunk)
            received += len(chunk)
            time.sleep(len(chunk) / rate)
        result["status"] = status_of(head)
        result["received"] = received
        result["sha256"] = digest.hexdigest()


def test_sigterm_lets_a_long_transfer_finish(start_server, tmp_path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    payload = os.urandom(SIZE)
    (root / "long.mp4").write_bytes(payload)
    server: ServerProcess = start_server(
        media_root=root,
        env={
            "VOD_DRAIN_DELAY_SECONDS": "1",
            "VOD_SHUTDOWN_GRACE_SECONDS": "20",
        },
    )
    result: dict[str, object] = {}
    reader = threading.Thread(
        target=slow_download, args=(server.port, "/long.mp4", result, 16 * 1024 * 1024)
    )
    reader.start()
    while "started" not in result:
        time.sleep(0.01)
    signalled = time.monotonic()
    server.process.send_signal(15)
    server.wait_for_event("drain delay")
    # during the drain delay the server still answers, but /readyz fails
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 503
    server.wait_for_event("draining")
    with pytest.raises(httpx.ConnectError):  # no new connections once draining
        httpx.get(f"{server.url}/ping", timeout=2)
    assert reader.is_alive(), "the transfer should still be running"
    reader.join(30)
    assert result["status"] == 200
    assert result["received"] == SIZE
    assert result["sha256"] == hashlib.sha256(payload).hexdigest()
    assert server.process.wait(30) == 0
    assert time.monotonic() - signalled > 1.5


def test_grace_deadline_ends_a_stalled_transfer(start_server, tmp_path) -> None:
    root = sparse_media_root(tmp_path, 512 * 1024 * 1024)
    server: ServerProcess = start_server(media_root=root, env={"VOD_SHUTDOWN_GRACE_SECONDS": "1"})
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /big.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.recv(100)  # the response started; now never read again
        started = time.monotonic()
        server.process.send_signal(15)
        assert server.process.wait(20) == 0
        assert time.monotonic() - started < 10
    assert access_entry(server, "/big.mp4")["status"] == 499  # cut short, as nginx logs it


def test_header_timeout_closes_slow_clients(start_server) -> None:
    server: ServerProcess = start_server(env={"VOD_HEADER_TIMEOUT_SECONDS": "1"})
    for first_bytes in (b"GET /ping HTTP/1.1\r\nHost:", b""):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(first_bytes)
            started = time.monotonic()
            assert sock.recv(100) == b""  # closed by the server
            assert 0.5 < time.monotonic() - started < 5
    # a prompt client on the same server is served
    assert httpx.get(f"{server.url}/ping").status_code == 200


def test_idle_timeout_closes_keep_alive_connections(start_server) -> None:
    server: ServerProcess = start_server(
        env={"VOD_IDLE_TIMEOUT_SECONDS": "1", "VOD_HEADER_TIMEOUT_SECONDS": "30"}
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert status_of(first) == 200
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 5


def test_connection_cap(start_server) -> None:
    server: ServerProcess = start_server(env={"VOD_MAX_CONNECTIONS": "2"})
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        time.sleep(0.2)
        refused = raw_response_head(server.port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(refused) == 503
        assert b"too many connections" in refused or b"application/json" in refused
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.url}/ping").status_code == 200


def test_one_metrics_endpoint_merges_both_sides(start_server) -> None:
    """/metrics carries the data plane's series (media) and the Python side's (ping, uploads),
    summed where both have the same name and labels."""
    server: ServerProcess = start_server(env={"VOD_WORKERS": "2"})
    (server.media_root / "a.mp4").write_bytes(b"abc")
    with server.client() as c:
        for _ in range(30):
            assert c.get("/ping").status_code == 200
        for _ in range(7):
            assert c.get("/a.mp4").status_code == 200
        assert c.get("/missing.mp4").status_code == 404
        text = c.get("/metrics").text

    def value(prefix: str) -> float:
        lines = [ln for ln in text.splitlines() if ln.startswith(prefix + " ")]
        assert len(lines) == 1, (prefix, lines)
        return float(lines[0].split()[-1])

    assert value('vod_http_requests_total{method="GET",route="ping",status_class="2xx"}') == 30
    assert value('vod_http_requests_total{method="GET",route="media",status_class="2xx"}') == 7
    assert value('vod_http_requests_total{method="GET",route="media",status_class="4xx"}') == 1
    assert value('vod_http_response_body_bytes_total{route="media"}') >= 21
    assert value('vod_http_request_duration_seconds_count{route="media"}') == 8
    assert value("vod_http_requests_in_flight") == 0  # the scrape itself is not counted
    assert "vod_upload_bytes_total" in text
    assert text.count("# TYPE vod_http_requests_total ") == 1
    deadline = time.monotonic() + 5  # the data plane's access log is flushed every second
    while len({e["pid"] for e in server.events("access")}) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = {e["pid"] for e in server.events("access")}
    assert len(pids) == 2, "the data plane and the Python side each log their requests"


def test_rated_series_exist_before_traffic_and_bytes_count_while_sent(
    start_server, tmp_path
) -> None:
    """What alerts, panels and the autoscaler rate is written at zero before the first request
    (rate() misses a series' first increment otherwise); a long download's bytes are counted while
    it is sent and it is in flight until it ends; the scrape is not in flight."""
    root = sparse_media_root(tmp_path, SIZE)
    server: ServerProcess = start_server(media_root=root)
    with server.client() as c:
        before = metric_samples(c.get("/metrics").text)
    media = 'route="media"'
    for series in (
        *(f'vod_http_requests_total{{method="{m}",{media},status_class="{k}xx"}}'
          for m in ("GET", "HEAD") for k in "2345"),
        f"vod_http_response_body_bytes_total{{{media}}}",
        f"vod_http_request_duration_seconds_count{{{media}}}",
        f'vod_http_request_duration_seconds_bucket{{le="0.25",{media}}}',
        *(f'vod_range_requests_total{{kind="{k}"}}'
          for k in ("single", "suffix", "multi", "unsatisfiable", "ignored")),
        *(f'vod_upload_failures_total{{reason="{r}"}}' for r in UPLOAD_FAILURE_REASONS),
        "vod_http_requests_in_flight",
    ):  # fmt: skip
        assert before.get(series) == 0, (series, before.get(series))

    def scrape() -> dict[str, float]:
        with server.client() as c:
            return metric_samples(c.get("/metrics").text)

    bytes_series = f"vod_http_response_body_bytes_total{{{media}}}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as viewer:
        viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        viewer.sendall(b"GET /big.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        deadline = time.monotonic() + 10
        while True:  # read 16 MiB of 48: the response is far from its end
            received += len(viewer.recv(1024 * 1024))
            now = scrape()
            if received >= 16 * 1024 * 1024 and now[bytes_series] >= 8 * 1024 * 1024:
                break
            assert time.monotonic() < deadline, (received, now[bytes_series])
        assert now["vod_http_requests_in_flight"] == 1
        assert now[bytes_series] < SIZE
    deadline = time.monotonic() + 5  # the viewer left: its request ends (499) and leaves
    while (now := scrape())["vod_http_requests_in_flight"] != 0:
        assert time.monotonic() < deadline, now["vod_http_requests_in_flight"]


def access_entry(server: ServerProcess, path: str, timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in server.events("access"):
            if entry["path"] == path:
                return entry
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {path}")


def test_send_timeout_closes_a_client_that_stops_reading(start_server, tmp_path) -> None:
    size = 64 * 1024 * 1024
    root = sparse_media_root(tmp_path, size)
    timeout = 1
    server: ServerProcess = start_server(
        media_root=root,
        env={"VOD_SEND_TIMEOUT_SECONDS": str(timeout)},
    )
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        # never read until the server gave up; then reading ends (EOF or reset) far short of
        # the file: a server still holding the connection would send all 64 MiB and wait
        event = server.wait_for_event("send timeout", timeout=timeout + 10)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += len(chunk)
        assert time.monotonic() - started < timeout + 10
    assert received < size // 2
    assert event["path"] == "/big.mp4"
    assert access_entry(server, "/big.mp4")["status"] == 499
    text = httpx.get(f"{server.url}/metrics").text
    assert "vod_send_timeouts_total 1.0" in text
    assert answered_5xx(text) == {}
    with server.client() as c:  # still healthy, and the file is still served
        assert c.get("/healthz").status_code == 200
        assert c.get("/big.mp4", headers={"Range": "bytes=0-9"}).content == bytes(10)


def test_client_abort_mid_body_is_499_not_an_error(start_server, tmp_path) -> None:
    root = sparse_media_root(tmp_path, 64 * 1024 * 1024)
    server: ServerProcess = start_server(media_root=root)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(sock.recv(65536)) == 200
        time.sleep(0.2)
    # closed with unread bytes: the kernel resets the connection mid-body
    entry = access_entry(server, "/big.mp4")
    assert entry["status"] == 499
    assert int(str(entry["bytes"])) < 64 * 1024 * 1024
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        metric_samples(text)[
            'vod_http_requests_total{method="GET",route="media",status_class="4xx"}'
        ]
        == 1
    )
    assert answered_5xx(text) == {}
    assert [e for e in server.logs if e.get("level") == "error"] == []


def test_the_data_plane_stops_when_the_supervisor_is_killed(start_server) -> None:
    """SIGKILL of the supervisor (an OOM kill) leaves no data plane holding the port."""
    server: ServerProcess = start_server(env={"VOD_SHUTDOWN_GRACE_SECONDS": "1"})
    dataplane = int(server.wait_for_event("listening")["dataplane_pid"])
    assert httpx.get(f"{server.url}/ping").status_code == 200
    server.kill()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{dataplane}") and time.monotonic() < deadline:
        with open(f"/proc/{dataplane}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break  # exited, not yet reaped
        time.sleep(0.05)
    assert time.monotonic() < deadline, "the data plane outlived its supervisor"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/ping", timeout=2)
