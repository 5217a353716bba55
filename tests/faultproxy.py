"""A fault-injecting TCP proxy for tests: it sits in front of a real server on 127.0.0.1.

Modes (``proxy.mode = ...``; ``hang`` applies to new connections, the others at once):
``pass`` forwards both ways; ``refuse()`` stops listening and closes open connections;
``hang`` accepts and reads but never answers; ``cut`` forwards ``cut_after`` bytes of the
server's answer, then closes both sides; ``delay`` forwards the answer ``delay_chunk`` bytes at
a time, ``delay_seconds`` apart. ``response_bytes`` counts what the server sent through it;
``requests`` lists the request lines clients sent (``"GET /b/v.mp4 HTTP/1.1"``), read from the
start of each chunk a client sends (exact for clients that send bodiless requests one at a time
per connection, as HTTP clients of an origin do).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.cut_after = 0
        self.delay_seconds = 0.05
        self.delay_chunk = 16 * 1024
        self.response_bytes = 0
        self.requests: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    # -- listening -------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        """Stop listening: connections are refused until ``resume``."""
        self.mode = "refuse"
        self._stop_listening()
        self._close_connections()

    def _close_connections(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _stop_listening(self) -> None:
        if self._listener is not None:
            # shutdown wakes the accepting thread: close() alone leaves the socket listening
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def resume(self) -> None:
        self.mode = "pass"
        if self._listener is None:
            self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    # -- one connection ----------------------------------------------------------------------

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == "hang":
            try:
                while client.recv(65536):
                    pass
            except OSError:
                pass
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.append(upstream)
        threading.Thread(target=self._pump_requests, args=(client, upstream), daemon=True).start()
        sent = 0
        try:
            while True:
                mode = self.mode  # read per chunk: a kept-alive connection follows changes
                data = upstream.recv(self.delay_chunk if mode == "delay" else 65536)
                if not data:
                    break
                if mode == "cut" and sent + len(data) >= self.cut_after:
                    data = data[: self.cut_after - sent]
                    client.sendall(data)
                    self._count(len(data))
                    break
                if mode == "delay":
                    time.sleep(self.delay_seconds)
                client.sendall(data)
                sent += len(data)
                self._count(len(data))
        except OSError:
            pass
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _count(self, n: int) -> None:
        with self._lock:
            self.response_bytes += n

    def _pump_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                if line.split(" ", 1)[0] in ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"):
                    with self._lock:
                        self.requests.append(line)
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closing.set()
        self._stop_listening()
        self._close_connections()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
