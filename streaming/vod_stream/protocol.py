"""Connection-level limits on top of aiohttp's low-level server.

aiohttp has an idle (keep-alive) timeout but no header timeout and no connection cap, so:
``ConnectionHandler`` closes a connection whose request headers are not complete within the
header timeout (slow-loris), and ``StreamServer`` answers connections beyond the cap with a
503 and closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

_BUSY_BODY = json.dumps(
    {"error": {"status": 503, "message": "too many connections, retry shortly"}}
).encode()
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)


class ConnectionHandler(RequestHandler):
    """aiohttp's request handler plus a deadline for receiving each request's headers."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Without it, a response's last partial segment waits for the client's delayed
            # ACK (about 40 ms) after the header packet: small ranges would crawl.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._request_in_progress:
            self._cancel_header_timer()
        elif self._header_timer is None:
            self._arm_header_timer()  # the first bytes of a request are here: start the clock

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timeout > 0:
            self._header_timer = self._loop.call_later(self._header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting and not self._messages and not self._request_in_progress:
            self.force_close()


class Refuser(asyncio.Protocol):
    """Answers one connection over the cap with 503 and closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY_RESPONSE)
        transport.close()


class StreamServer(web.Server):
    def __init__(
        self, handler: Any, *, max_connections: int, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self.header_timeout = header_timeout

    def __call__(self) -> asyncio.BaseProtocol:  # type: ignore[override]
        if len(self._connections) >= self.max_connections:
            return Refuser()
        return ConnectionHandler(
            self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs
        )
