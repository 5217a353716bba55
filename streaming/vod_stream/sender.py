"""Write a response Plan: literal segments through aiohttp, file ranges with ``loop.sendfile``.

``loop.sendfile`` on the default asyncio loop over plain TCP is ``os.sendfile``: the bytes go
from the page cache to the socket without entering Python, so memory per connection does not
depend on the file's size. (Under TLS or uvloop asyncio falls back to reading chunks.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import BinaryIO

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream.plan import Plan


async def send_plan(
    request: BaseRequest,
    plan: Plan,
    file: BinaryIO,
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
            else:
                await loop.sendfile(transport, file, segment.start, segment.length)
                on_bytes(segment.length)
    await response.write_eof()
    return response
