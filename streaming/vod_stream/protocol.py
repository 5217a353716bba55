"""The connection protocol: aiohttp's request handler plus what it lacks.

- A header timeout (aiohttp has only an idle timeout): a connection whose request headers are
  not complete in time is closed (slow-loris).
- A connection cap: ``StreamServer`` answers connections beyond it with 503 and closes them.
- A fast path for plain GET/HEAD of media: while a connection sends only such requests they are
  parsed by ``fastpath`` and answered here, straight from ``data_received``: headers with one
  ``transport.write`` and file bytes with ``os.sendfile``; only a body that does not fit in the
  socket buffer continues in a task (``loop.sendfile``). The first request the fast path does
  not take hands the connection's bytes to aiohttp, which serves the rest of the connection.
  Both paths answer from the same ``StreamApp.media_answer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from vod_stream.errors import error_body
from vod_stream.fastpath import (
    MAX_HEAD_BYTES,
    SimpleRequest,
    parse_simple_request,
    response_head,
)
from vod_stream.plan import Segment
from vod_stream.sender import CLIENT_CLOSED, SendTimeout, send_range, sendfile_now
from vod_stream.server import ROUTES, MediaAnswer, RequestContext, StreamApp

RESERVED = frozenset(ROUTES)

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
# Pipelined bytes buffered while a response is being sent; above this, reading pauses.
MAX_PENDING_BYTES = 256 * 1024
_FAR = 10**7  # seconds: keeps aiohttp's idle timer away while a fast response is sending
LOG = logging.getLogger("vod_stream")


class ConnectionHandler(RequestHandler):
    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        app: StreamApp | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._app = app
        self._fast = app is not None  # until a request needs aiohttp
        self._pending = bytearray()
        self._sending: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._closing = False

    # -- connection events -------------------------------------------------------------

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
        if not self._fast:
            super().data_received(data)
            if self._messages or self._request_in_progress:
                self._cancel_header_timer()
            elif self._header_timer is None:
                self._arm_header_timer()  # the first bytes of a request: start the clock
            return
        if self._closing:
            return
        self._pending += data
        if self._sending is None:
            self._serve_pending()
        elif len(self._pending) > MAX_PENDING_BYTES and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        self._closing = True
        if self._sending is not None:
            self._sending.cancel()
        super().connection_lost(exc)

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 -- aiohttp API
        """Let a fast response finish (up to ``timeout``), then close as aiohttp does."""
        started = time.monotonic()
        self._closing = True  # no further requests on this connection
        if self._sending is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._sending), timeout)
            if self._sending is not None:
                self._sending.cancel()
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        await super().shutdown(left)

    # -- the fast path -------------------------------------------------------------------

    def _serve_pending(self) -> None:
        """Answer every complete request in the buffer, in order, until one must wait."""
        while self._fast and self._sending is None and not self._closing:
            end = self._pending.find(b"\r\n\r\n")
            if end < 0:
                if len(self._pending) > MAX_HEAD_BYTES:
                    self._hand_to_aiohttp()  # it answers 431/400 by its own limits
                elif self._pending and self._header_timer is None:
                    self._arm_header_timer()
                elif not self._pending:
                    self._cancel_header_timer()
                return
            assert self._app is not None
            request = parse_simple_request(bytes(self._pending[: end + 4]), RESERVED)
            if request is None:
                self._hand_to_aiohttp()
                return
            del self._pending[: end + 4]
            self._cancel_header_timer()
            self._respond(self._app, request)

    def _hand_to_aiohttp(self) -> None:
        self._fast = False
        data = bytes(self._pending)
        self._pending.clear()
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if data:
            self.data_received(data)

    def _respond(self, app: StreamApp, request: SimpleRequest) -> None:
        transport = self.transport
        assert transport is not None
        ctx = app.begin(request.headers)
        remote = _peer(transport)
        status = 500
        keep_alive = request.keep_alive and not app.draining
        try:
            answer = app.media_answer(
                request.method, request.path, request.query, request.headers, remote
            )
        except Exception:
            LOG.exception("unhandled error", extra={"fields": {"request_id": ctx.request_id}})
            answer = MediaAnswer.error(500, "internal error")
        status = answer.status
        headers = {**answer.headers, **ctx.headers}
        if answer.plan is None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(answer.body))
        if not keep_alive:
            headers["Connection"] = "close"
        head = response_head(answer.status, headers, time.time())
        body: tuple[Segment, ...] = ()
        if answer.plan is None:
            if request.method != "HEAD":  # RFC 9110 9.3.2: the length as for GET, no content
                head += answer.body
                ctx.count(len(answer.body))
        elif not answer.plan.head and answer.status != 304:
            body = answer.plan.body
        try:
            transport.write(head)
            rest = self._send_now(transport, answer, body, ctx)
        except OSError:  # the client went away
            self._finish(app, ctx, request, CLIENT_CLOSED, answer, keep_alive=False)
            return
        if rest is None:
            self._finish(app, ctx, request, status, answer, keep_alive)
            return
        self._next_keepalive_close_time = self._loop.time() + _FAR
        self._sending = self._loop.create_task(
            self._send_rest(app, ctx, request, status, answer, rest, keep_alive)
        )

    def _send_now(
        self,
        transport: asyncio.Transport,
        answer: MediaAnswer,
        body: tuple[Segment, ...],
        ctx: RequestContext,
    ) -> tuple[Segment, ...] | None:
        """Send what goes out without waiting; the segments left (``None``: all sent)."""
        for index, segment in enumerate(body):
            if isinstance(segment, bytes):
                transport.write(segment)
                ctx.count(len(segment))
                continue
            assert answer.file is not None
            sent = sendfile_now(transport, answer.file, segment)
            ctx.count(sent)
            if sent < segment.length:
                left = type(segment)(segment.start + sent, segment.end)
                return (left, *body[index + 1 :])
        return None

    async def _send_rest(
        self,
        app: StreamApp,
        ctx: RequestContext,
        request: SimpleRequest,
        status: int,
        answer: MediaAnswer,
        rest: tuple[Segment, ...],
        keep_alive: bool,
    ) -> None:
        transport = self.transport
        completed = False
        try:
            for segment in rest:
                if transport is None or transport.is_closing():
                    break
                if isinstance(segment, bytes):
                    transport.write(segment)
                    ctx.count(len(segment))
                else:
                    assert answer.file is not None
                    await send_range(
                        transport,
                        answer.file,
                        segment,
                        app.settings.send_timeout_seconds,
                        ctx.count,
                    )
                    self._next_keepalive_close_time = self._loop.time() + _FAR
            else:
                completed = True
        except SendTimeout:
            app.send_timed_out(ctx, request.path)
        except (ConnectionError, asyncio.CancelledError, RuntimeError, OSError):
            pass
        finally:
            self._sending = None
            # a response not taken in full is logged as nginx does, 499, not as sent
            final = status if completed else CLIENT_CLOSED
            self._finish(app, ctx, request, final, answer, keep_alive and completed)
        if self._reading_paused and self.transport is not None and not self._closing:
            self.transport.resume_reading()
            self._reading_paused = False
        if not self._closing:
            self._serve_pending()

    def _finish(
        self,
        app: StreamApp,
        ctx: RequestContext,
        request: SimpleRequest,
        status: int,
        answer: MediaAnswer,
        keep_alive: bool,
    ) -> None:
        if answer.file is not None:
            answer.file.close()
        app.record(
            ctx,
            "media",
            request.method,
            request.path,
            status,
            request.headers,
            _peer(self.transport),
        )
        if not keep_alive or self._closing or app.draining:
            self._closing = True
            if self.transport is not None:
                self.transport.close()  # after the buffered bytes are written
            return
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a malformed request (400, 413, 431...), as JSON like the rest."""
        super().handle_error(request, status, exc, message)  # logs; raises if already sending
        reason = message.split("\n", 1)[0] if status != 500 and message else ""
        refusal = web.Response(
            status=status,
            body=error_body(status, reason or HTTPStatus(status).phrase),
            content_type="application/json",
        )
        refusal.force_close()
        return refusal

    # -- header timeout ------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timeout > 0:
            self._header_timer = self._loop.call_later(self._header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._fast:
            if self._sending is None and self.transport is not None:
                self._closing = True
                self.transport.close()
            return
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting and not self._messages and not self._request_in_progress:
            self.force_close()


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else None


class Refuser(asyncio.Protocol):
    """Answers one connection over the cap with 503 and closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY_RESPONSE)
        transport.close()


class StreamServer(web.Server):
    def __init__(
        self,
        handler: Any,
        *,
        max_connections: int,
        header_timeout: float,
        app: StreamApp | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.app = app

    def __call__(self) -> asyncio.BaseProtocol:  # type: ignore[override]
        if len(self._connections) >= self.max_connections:
            return Refuser()
        return ConnectionHandler(
            self,
            loop=self._loop,
            header_timeout=self.header_timeout,
            app=self.app,
            **self._kwargs,
        )
