"""The data plane's access log: valid JSON lines with the same fields under concurrent load,
written within about a second when traffic is light (nginx's `flush=1s`), and never in the way
of answering: a blocked stdout drops (and counts) records instead of stalling the workers."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.component.conftest import ServerProcess

pytestmark = pytest.mark.component

ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "pid",
    "event",
    "worker",
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
    "range",
    "remote",
    "user_agent",
    "request_id",
    "traceparent",
}


def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    (root / "a.ts").write_bytes(b"A" * 1000)
    (root / "b.ts").write_bytes(b"B" * 70_000)
    return root


def pipelined(port: int, requests: list[bytes]) -> list[int]:
    """Send every request at once on one connection; the statuses of the answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"".join(requests))
        statuses: list[int] = []
        data = b""
        while len(statuses) < len(requests):
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(262144)
                assert chunk, f"closed after {len(statuses)} answers"
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            statuses.append(int(lines[0].split(b" ")[1]))
            length = next(
                (
                    int(ln.split(b":")[1])
                    for ln in lines[1:]
                    if ln.lower().startswith(b"content-length")
                ),
                0,
            )
            if not requests[len(statuses) - 1].startswith(b"HEAD"):
                while len(data) < length:
                    chunk = sock.recv(262144)
                    assert chunk
                    data += chunk
                data = data[length:]
        return statuses


def test_every_line_is_json_with_the_fields_under_concurrent_load(
    start_server, tmp_path: Path
) -> None:
    """8 clients at once, with quotes, backslashes, control-free UTF-8 and odd ranges in what
    is logged: after the drain every stdout line parses, and there is one access record per
    request with exactly the fields of the Python side's records."""
    server: ServerProcess = start_server(media_root=media(tmp_path), env={"VOD_WORKERS": "2"})
    odd_agent = 'agent "quoted" \\ back\\slash é ✓'.encode()
    per_client = 400
    kinds = [
        b"GET /a.ts HTTP/1.1\r\nHost: x\r\nUser-Agent: " + odd_agent + b"\r\n\r\n",
        b'GET /b.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9,"x"\r\n\r\n',
        b'GET /b.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=100-65635\r\nX-Request-Id: id-"1\r\n\r\n',
        b"GET /no%22such%5Cfile.ts HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /a.ts HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    requests = [kinds[i % len(kinds)] for i in range(per_client)]
    failures: list[BaseException] = []
    statuses: list[int] = []

    def client() -> None:
        try:
            statuses.extend(pipelined(server.port, requests))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert len(statuses) == 8 * per_client
    assert server.terminate() == 0  # the drain writes what is buffered
    bad = []
    for line in server.raw_lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    assert not bad, [b[:300] for b in bad]
    records = [json.loads(line) for line in server.raw_lines if line.strip()]  # every line
    access = [r for r in records if r.get("event") == "access"]
    assert len(access) == len(statuses)
    for record in access:
        assert set(record) == ACCESS_FIELDS, record
        assert isinstance(record["duration_ms"], float)
        assert record["duration_ms"] >= 0
        assert record["pid"] == record["worker"]
    agents = {r["user_agent"] for r in access if r["path"] == "/a.ts" and r["method"] == "GET"}
    assert agents == {odd_agent.decode()}
    assert {r["path"] for r in access} == {"/a.ts", "/b.ts", '/no"such\\file.ts'}
    assert sorted(r["status"] for r in access) == sorted(statuses)
    assert {r["range"] for r in access if r["path"] == "/b.ts"} == {
        'bytes=5-9,"x"',
        "bytes=100-65635",
    }
    # an X-Request-Id that is not a safe token is replaced, never logged as received
    assert all(r["request_id"] != 'id-"1' for r in access)


def test_a_record_is_written_within_about_a_second(start_server, tmp_path: Path) -> None:
    """One request on a quiet server: its record is far from filling a buffer, and is written
    by the time flush (1 s, plus the writer's 0.1 s sweep)."""
    server: ServerProcess = start_server(media_root=media(tmp_path))
    time.sleep(0.5)
    sent = time.monotonic()
    assert httpx.get(f"{server.url}/a.ts", headers={"X-Request-Id": "flush-me"}).status_code == 200
    seen = None
    while time.monotonic() - sent < 5:
        if any(e.get("request_id") == "flush-me" for e in server.events("access")):
            seen = time.monotonic() - sent
            break
        time.sleep(0.01)
    assert seen is not None, "the record was not written within 5 s"
    assert seen < 1.6, seen


class HeldServer(ServerProcess):
    """A server whose stdout the test stops reading after startup (until `release`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reading = threading.Event()
        self.reading.set()
        super().__init__(*args, **kwargs)

    def _before_line(self) -> None:
        self.reading.wait()


def test_a_blocked_stdout_drops_records_but_never_the_answers(tmp_path: Path) -> None:
    """Nobody reads the server's stdout: answers keep coming at full speed (the workers never
    wait for the log), the records that did not fit are dropped and counted, and once stdout
    drains, logged + dropped = requests answered."""
    workdir = tmp_path / "server"
    (workdir / "keys").mkdir(parents=True)
    server = HeldServer(media(tmp_path), workdir)
    try:
        server.wait_for_event("descriptors")
        time.sleep(0.3)
        server.reading.clear()  # stdout fills up: the pipe, then the writer's queue
        batch = [
            b"HEAD /a.ts HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"x" * 300 + b"\r\n\r\n"
        ] * 1000
        started = time.monotonic()
        answered = 0
        for _ in range(30):
            statuses = pipelined(server.port, batch)
            assert set(statuses) == {200}
            answered += len(statuses)
        took = time.monotonic() - started
        server.reading.set()
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            if "vod_access_log_dropped_total" in text:
                break
        [dropped] = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("vod_access_log_dropped_total ")
        ]
        time.sleep(1.5)  # what the workers still buffer is flushed
        logged = sum(1 for e in server.events("access") if e.get("path") == "/a.ts")
        print(
            f"\n{answered} answered in {took:.1f} s with stdout blocked:"
            f" {logged} logged, {dropped:.0f} dropped"
        )
        assert dropped > 0
        assert logged + dropped == answered
    finally:
        server.reading.set()
        server.kill()
