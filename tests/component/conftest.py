"""Component tier: the real vod-stream server as a process on 127.0.0.1, real files and clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

JWT_SECRET = "component-test-secret-with-enough-bytes"
STARTUP_SECONDS = 30


class ServerProcess:
    """A running ``python -m vod_stream``; its JSON log lines are collected as they arrive."""

    def __init__(
        self,
        media_root: Path,
        workdir: Path,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.media_root = media_root
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # a worktree's sources (and its data plane build) rather than the installed ones
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}),
            "HOME": str(workdir),
            "VOD_HOST": "127.0.0.1",
            "VOD_PORT": "0",
            "VOD_WORKERS": "1",
            "VOD_MEDIA_ROOT": str(media_root),
            "VOD_METRICS_DIR": str(workdir / "metrics"),
            "VOD_SIGNING_KEYS_DIR": str(workdir / "keys"),
            "VOD_SHUTDOWN_GRACE_SECONDS": "10",
            **(env or {}),
        }
        self.logs: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self.process = subprocess.Popen(
            list(command or [sys.executable, "-m", "vod_stream"]),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=preexec_fn,  # used only to set resource limits
        )
        self._listening = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(STARTUP_SECONDS):
            self.kill()
            raise RuntimeError("server did not start:\n" + "\n".join(self.raw_lines[-30:]))
        self.url = f"http://127.0.0.1:{self.port}"

    def _before_line(self) -> None:
        """Called before each stdout line is read (a subclass may hold the reader here)."""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._before_line()
            self.raw_lines.append(line.rstrip("\n"))
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.logs.append(entry)
            if entry.get("event") == "listening":
                self.port = int(entry["port"])
                self._listening.set()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self.logs) if e.get("event") == name]

    def wait_for_event(self, name: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[-1]
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} event in the log")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def metric_samples(text: str) -> dict[str, float]:
    """A text exposition's samples: series (name and labels, as written) -> value."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def answered_5xx(text: str) -> dict[str, float]:
    """The request series of a /metrics text that counted a 5xx (the media route's exist from
    the start, at zero: only a value above zero is an answer)."""
    return {
        series: value
        for series, value in metric_samples(text).items()
        if series.startswith("vod_http_requests_total") and 'status_class="5xx"' in series and value
    }


def raw_request(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are (no client normalisation) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket) -> bytes:
    """Read from `sock` up to the end of a response's headers (or until it closes)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def raw_response_head(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are and read only up to the end of the response headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_head(sock)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def make_token(secret: str = JWT_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "tester", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on demand (each with its own settings); all are stopped afterwards."""
    started: list[ServerProcess] = []
    counter = iter(range(1000))

    def start(media_root: Path | None = None, **kwargs: Any) -> ServerProcess:
        workdir = tmp_path / f"server{next(counter)}"
        workdir.mkdir()
        (workdir / "keys").mkdir()
        root = media_root or tmp_path / "media"
        root.mkdir(exist_ok=True)
        server = ServerProcess(root, workdir, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
