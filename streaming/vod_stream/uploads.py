"""PUT and DELETE of media files.

A PUT streams the body into ``<root>/.vod-tmp/`` (same filesystem), then fsyncs, renames it
over the target atomically and fsyncs the folder: a reader sees the old file or the new one,
never a part. Whatever goes wrong (too large, client gone, body timeout, full disk) the
temporary file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream import logs, metrics
from vod_stream._dataplane import make_etag
from vod_stream.config import Settings
from vod_stream.errors import json_error, json_response
from vod_stream.paths import open_regular_file, writable_target

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class UploadFailed(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _receive(request: BaseRequest, fd: int, limit: int, stall_seconds: float) -> int:
    """Copy the body into ``fd``; the received size."""
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
            return received
        received += len(chunk)
        if received > limit:
            raise UploadFailed(413, "too_large", f"the body is larger than {limit} bytes")
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise UploadFailed(507, "no_space", "no space left to store the file") from None
            raise


def _stage(root_real: str) -> tuple[int, str]:
    """A new temporary file in the staging folder (same filesystem as the root)."""
    tmp_dir = os.path.join(root_real, ".vod-tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    return tempfile.mkstemp(dir=tmp_dir, prefix="upload-")


async def put(
    request: BaseRequest,
    relative: str,
    settings: Settings,
    root_real: str,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        metrics.UPLOAD_FAILURES.labels("too_large").inc()
        refused = json_error(413, f"the body is larger than {limit} bytes", headers)
        refused.force_close()  # do not read a body we refused
        return refused
    target = writable_target(root_real, relative)
    if target is None:
        return json_error(409, "the path is not a file that can be written", headers)
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    loop = asyncio.get_running_loop()
    existed = os.path.lexists(target)  # noqa: ASYNC240 -- metadata calls, as nginx does inline
    try:
        fd, tmp_path = _stage(root_real)
    except OSError as exc:
        metrics.UPLOAD_FAILURES.labels("error").inc()
        status = 507 if exc.errno in NO_SPACE else 500
        return json_error(status, f"cannot stage the upload: {exc.strerror}", headers)
    stored = False
    try:
        size = await _receive(request, fd, limit, settings.body_timeout_seconds)
        await loop.run_in_executor(None, os.fsync, fd)
        os.fchmod(fd, 0o644)
        os.replace(tmp_path, target)
        stored = True
        await loop.run_in_executor(None, _fsync_dir, os.path.dirname(target))
    except UploadFailed as failure:
        metrics.UPLOAD_FAILURES.labels(failure.reason).inc()
        logs.event("upload failed", path="/" + relative, reason=failure.reason)
        if failure.reason == "disconnected":
            return json_error(400, failure.message, headers)  # nobody is listening
        response = json_error(failure.status, failure.message, headers)
        response.force_close()  # the rest of the body is not read
        return response
    except OSError as exc:
        metrics.UPLOAD_FAILURES.labels("no_space" if exc.errno in NO_SPACE else "error").inc()
        status = 507 if exc.errno in NO_SPACE else 500
        return json_error(status, f"cannot store the file: {exc.strerror}", headers)
    except BaseException:
        metrics.UPLOAD_FAILURES.labels("disconnected").inc()
        raise
    finally:
        os.close(fd)
        if not stored:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
    metrics.UPLOAD_BYTES.inc(size)
    info = os.stat(target)
    body = {
        "path": "/" + relative,
        "size": size,
        "etag": str(make_etag(info.st_ino, info.st_size, info.st_mtime_ns)),
    }
    status = 200 if existed else 201
    return json_response(body, status, {**headers, "Location": "/" + relative})


def delete(relative: str, root_real: str, headers: Mapping[str, str]) -> web.StreamResponse:
    opened = open_regular_file(root_real, relative)
    if opened is None:
        return json_error(404, "no such file", headers)
    os.close(opened)
    try:
        os.unlink(os.path.join(root_real, relative))
    except FileNotFoundError:
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
