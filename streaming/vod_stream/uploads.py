"""PUT and DELETE of media, written to the origin (storage.py: the media root or S3).

The body is streamed into the origin as it arrives, all or nothing: on the file origin it is
staged in ``<root>/.vod-tmp/`` and renamed over the target; on S3 it is one PUT or a multipart
upload that is aborted on failure. Whatever goes wrong (too large, client gone, body timeout,
full disk, S3 refusing) nothing is left: no file, no temporary file, no multipart parts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream import logs, metrics
from vod_stream.config import Settings
from vod_stream.errors import json_error, json_response
from vod_stream.storage import NO_SPACE, NotWritable, Origin, OriginError


class UploadFailed(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


async def body_chunks(
    request: BaseRequest, limit: int, stall_seconds: float
) -> AsyncIterator[bytes]:
    """The request body as it arrives; UploadFailed on a stall (408), a body larger than
    ``limit`` (413) or a body that ends early (400, the client is gone)."""
    received = 0
    while True:
        try:
            async with asyncio.timeout(stall_seconds or None):
                chunk = await request.content.readany()
        except TimeoutError:
            raise UploadFailed(408, "timeout", "the request body stalled") from None
        except Exception as exc:  # connection reset, truncated body, bad chunked framing
            raise UploadFailed(400, "disconnected", f"body not received: {exc!r}") from None
        if not chunk:
            if request.content.exception() is not None or not request.content.is_eof():
                raise UploadFailed(400, "disconnected", "the body ended early")
            return
        received += len(chunk)
        if received > limit:
            raise UploadFailed(413, "too_large", f"the body is larger than {limit} bytes")
        yield chunk


async def put(
    request: BaseRequest,
    relative: str,
    settings: Settings,
    origin: Origin,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        metrics.UPLOAD_FAILURES.labels("too_large").inc()
        refused = json_error(413, f"the body is larger than {limit} bytes", headers)
        refused.force_close()  # do not read a body we refused
        return refused
    try:
        origin.check_writable(relative)
    except NotWritable as exc:
        return _not_writable(exc, headers)
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        existed = await origin.exists(relative)
        stored = await origin.write(
            relative, body_chunks(request, limit, settings.body_timeout_seconds)
        )
    except UploadFailed as failure:
        metrics.UPLOAD_FAILURES.labels(failure.reason).inc()
        logs.event("upload failed", path="/" + relative, reason=failure.reason)
        if failure.reason == "disconnected":
            return json_error(400, failure.message, headers)  # nobody is listening
        response = json_error(failure.status, failure.message, headers)
        response.force_close()  # the rest of the body is not read
        return response
    except OriginError as exc:
        metrics.UPLOAD_FAILURES.labels("origin").inc()
        logs.event("upload failed", path="/" + relative, reason="origin", error=exc.message)
        response = json_error(exc.status, exc.message, headers)
        response.force_close()
        return response
    except OSError as exc:
        full = exc.errno in NO_SPACE
        metrics.UPLOAD_FAILURES.labels("no_space" if full else "error").inc()
        message = "no space left to store the file" if full else f"cannot store: {exc.strerror}"
        response = json_error(507 if full else 500, message, headers)
        response.force_close()  # the rest of the body is not read
        return response
    except BaseException:
        metrics.UPLOAD_FAILURES.labels("disconnected").inc()
        raise
    metrics.UPLOAD_BYTES.inc(stored.size)
    body = {"path": "/" + relative, "size": stored.size, "etag": stored.etag}
    status = 200 if existed else 201
    return json_response(body, status, {**headers, "Location": "/" + relative})


def _not_writable(exc: NotWritable, headers: Mapping[str, str]) -> web.StreamResponse:
    extra = {"Allow": "GET, HEAD"} if exc.status == 405 else {}
    return json_error(exc.status, str(exc), {**headers, **extra})


async def delete(relative: str, origin: Origin, headers: Mapping[str, str]) -> web.StreamResponse:
    try:
        removed = await origin.delete(relative)
    except NotWritable as exc:
        return _not_writable(exc, headers)
    except OriginError as exc:
        return json_error(exc.status, exc.message, headers)
    if not removed:
        return json_error(404, "no such file", headers)
    return web.Response(status=204, headers=headers)


def remove_stale_uploads(tmp_dir: Path, older_than_seconds: float) -> int:
    """Remove staging files nobody has written to for a while (left by a crash)."""
    removed = 0
    cutoff = time.time() - older_than_seconds
    try:
        entries = list(os.scandir(tmp_dir))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed
