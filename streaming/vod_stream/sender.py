"""Write a response Plan: literal segments through aiohttp, file ranges with ``sendfile``.

File ranges go from the page cache to the socket without entering Python (zero copy), so
memory per connection does not depend on the file's size. The fast path calls ``os.sendfile``
directly on the socket when aiohttp's transport has nothing buffered (the usual case right
after the headers were written): most ranges then leave in one system call with no futures
or poller changes. Whatever does not fit in the socket buffer is finished by
``loop.sendfile``, which waits for the socket to become writable. (Under TLS or uvloop asyncio
falls back to reading chunks.)
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


async def send_plan(
    request: BaseRequest,
    plan: Plan,
    file: Sendable,
    extra_headers: Mapping[str, str],
    on_bytes: Callable[[int], None],
) -> web.StreamResponse:
    """Send ``plan`` (a 200/206/304 with its body) and return the prepared response."""
    response = web.StreamResponse(status=plan.status, headers={**plan.headers, **extra_headers})
    if plan.status != 304:
        response.content_length = plan.content_length
    await response.prepare(request)
    if not plan.head and plan.status != 304:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost before the body")
        loop = asyncio.get_running_loop()
        for segment in plan.body:
            if isinstance(segment, bytes):
                await response.write(segment)
                on_bytes(len(segment))
                continue
            sent = sendfile_now(transport, file, segment)
            if sent < segment.length:
                rest = segment.length - sent
                await loop.sendfile(transport, cast(Any, file), segment.start + sent, rest)
            on_bytes(segment.length)
    await response.write_eof()
    return response
