"""Write a response Plan: literal segments through aiohttp, file ranges with ``sendfile``.

File ranges go from the page cache to the socket without entering Python (zero copy), so
memory per connection does not depend on the file's size. The fast path calls ``os.sendfile``
directly on the socket when aiohttp's transport has nothing buffered (the usual case right
after the headers were written): most ranges then leave in one system call with no futures
or poller changes. Whatever does not fit in the socket buffer is finished by
``loop.sendfile``, which waits for the socket to become writable. Plain TCP only: there is no
fallback to reading chunks (TLS, uvloop), which a shared descriptor with no file position could
not serve.

A send timeout, like nginx's ``send_timeout``, bounds the wait for a client that stops reading:
``loop.sendfile`` is given ``WAIT_STEP`` bytes at a time and each step must go out within the
timeout, else the connection is aborted (``SendTimeout``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream.plan import Plan
from vod_stream.ranges import ByteRange

# While the socket buffer is full, the bytes handed to one ``loop.sendfile``: the send timeout
# runs from the last step the client took (nginx's runs from the last write, which the kernel
# allows once about a third of the socket buffer is free, a similar amount).
WAIT_STEP = 256 * 1024
CLIENT_CLOSED = 499  # nginx's status for a response the client did not take in full


class SendTimeout(Exception):
    """The client took nothing for the send timeout; the connection has been aborted."""


class ResponseCut(Exception):
    """A prepared response whose body did not go out in full (the client went away, or the
    send timeout fired); ``response`` is returned to aiohttp, which then closes the connection."""

    def __init__(self, response: web.StreamResponse, timed_out: bool) -> None:
        super().__init__("send timeout" if timed_out else "client disconnected")
        self.response = response
        self.timed_out = timed_out


class Sendable(Protocol):
    """A file object ``loop.sendfile`` accepts (``fileno``, ``seek``, a binary mode)."""

    def fileno(self) -> int: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...


def sendfile_now(transport: asyncio.Transport, file: Sendable, part: ByteRange) -> int:
    """Send as much of ``part`` as the socket takes right now; the number of bytes sent."""
    if transport.get_write_buffer_size():
        return 0  # bytes queued in the transport must go first
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    sent = 0
    try:
        while sent < part.length:
            n = os.sendfile(sock.fileno(), file.fileno(), part.start + sent, part.length - sent)
            if n == 0:
                break
            sent += n
    except (BlockingIOError, InterruptedError):
        pass
    return sent


async def send_range(
    transport: asyncio.Transport,
    file: Sendable,
    part: ByteRange,
    send_timeout: float,
    on_bytes: Callable[[int], None],
) -> None:
    """Send ``part`` of ``file``: what the socket takes now, then the rest as it drains.

    Raises SendTimeout (after aborting the connection) when the client takes nothing for
    ``send_timeout`` seconds (0: no limit), ConnectionResetError when the connection is closing.
    """
    loop = asyncio.get_running_loop()
    start = part.start
    while start <= part.end:
        if transport.is_closing():
            raise ConnectionResetError("the connection is closing")
        sent = sendfile_now(transport, file, ByteRange(start, part.end))
        if not sent:
            step = min(WAIT_STEP, part.end - start + 1)
            try:
                async with asyncio.timeout(send_timeout or None):
                    sent = await loop.sendfile(
                        transport, cast(Any, file), start, step, fallback=False
                    )
            except TimeoutError:
                transport.abort()
                raise SendTimeout(f"the client took nothing for {send_timeout:g} s") from None
            except RuntimeError as exc:
                # "Transport is closing", or SendfileNotAvailableError: asyncio's name for a
                # first os.sendfile that failed, which on a regular file means a broken connection
                raise ConnectionResetError(f"sendfile failed: {exc}") from exc
            if not sent:
                raise OSError(f"the file ended before byte {start}")
        on_bytes(sent)
        start += sent


async def send_plan(
    request: BaseRequest,
    plan: Plan,
    file: Sendable,
    extra_headers: Mapping[str, str],
    on_bytes: Callable[[int], None],
    send_timeout: float,
) -> web.StreamResponse:
    """Send ``plan`` (a 200/206/304 with its body) and return the prepared response.

    Raises ResponseCut when the client goes away or stops reading before the end.
    """
    response = web.StreamResponse(status=plan.status, headers={**plan.headers, **extra_headers})
    if plan.status != 304:
        response.content_length = plan.content_length
    try:
        await response.prepare(request)
        if not plan.head and plan.status != 304:
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost before the body")
            for segment in plan.body:
                if isinstance(segment, bytes):
                    await response.write(segment)
                    on_bytes(len(segment))
                else:
                    await send_range(transport, file, segment, send_timeout, on_bytes)
        await response.write_eof()
    except SendTimeout as exc:
        raise ResponseCut(response, timed_out=True) from exc
    except ConnectionError as exc:
        raise ResponseCut(response, timed_out=False) from exc
    return response
