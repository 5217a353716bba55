"""The origin as the Python side writes it: one interface for the file origin and S3.

``Origin`` is what uploads (PUT/DELETE, and resumable uploads later) need: resolve a media path
to a key, ask whether it exists, write a whole object from a stream of chunks (all or nothing),
read a range, delete; list and delete every object under a folder (what packaging's prune and
``vod-stream unpublish`` need). ``open_origin(settings)`` picks the implementation from
``VOD_ORIGIN``:

- ``FileOrigin``: the media root; a write is staged in ``<root>/.vod-tmp/``, fsynced and renamed
  over the target (readers see the old file or the new one, never a part).
- ``S3Origin``: a bucket (and prefix) through ``obstore`` (the Python binding of the Rust
  ``object_store`` crate the data plane reads with). A write is a single PUT when the body fits
  in one part (``S3_PART_BYTES``), else a multipart upload in parts of that size, at most
  ``S3_PARTS_IN_FLIGHT`` uploading at once; any failure (the body stream raising, the client gone,
  a timeout, S3 refusing a part) aborts the multipart upload, so nothing is left behind.

The HTTP origin is read-only: writing to it is refused (``NotWritable``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vod_stream._dataplane import make_etag
from vod_stream.config import ConfigError, Settings
from vod_stream.paths import fsync_dir, media_path, open_regular_file, writable_target

if TYPE_CHECKING:
    from obstore import AsyncWritableFile
    from obstore.store import S3Store

#: S3 part size: bodies up to this size are one PUT, larger ones a multipart upload.
S3_PART_BYTES = 8 * 1024 * 1024
#: Parts uploading at once (memory per upload: about (1 + this) x S3_PART_BYTES).
S3_PARTS_IN_FLIGHT = 2
#: Chunks from the client are gathered to this size before they cross into obstore.
S3_WRITE_BYTES = 1024 * 1024
#: Chunk size of ``Origin.stream``.
STREAM_CHUNK_BYTES = 1024 * 1024
#: Keys per ListObjectsV2 page and per DeleteObjects call (S3's limit for both).
S3_LIST_CHUNK = 1000
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class NotWritable(Exception):
    """The path cannot be written in this origin (a folder, outside the root: 409)."""

    status = 409


class ReadOnly(NotWritable):
    """The origin takes no writes at all (HTTP): 405, only GET and HEAD are allowed."""

    status = 405


class OriginError(Exception):
    """The origin failed or refused; ``status`` is what the client gets (502, 504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Stored:
    """A written object: its size and the strong ETag readers will see."""

    size: int
    etag: str


class Origin(Protocol):
    """Where media lives, as the writers see it."""

    kind: str

    def ready(self) -> bool:
        """Cheap readiness check (no network call)."""
        ...

    def check_writable(self, relative: str) -> None:
        """Raise NotWritable when the media path (checked by ``media_path``) cannot be written
        (the file origin creates its parent folders here)."""
        ...

    async def exists(self, relative: str) -> bool: ...

    async def write(self, relative: str, chunks: AsyncIterator[bytes]) -> Stored:
        """Store the whole stream or nothing (exceptions of ``chunks`` propagate)."""
        ...

    async def read(self, relative: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an object."""
        ...

    def stream(self, relative: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of an object in chunks (e.g. to compose parts into one
        object: ``write(target, chained streams)``)."""
        ...

    async def delete(self, relative: str) -> bool:
        """Remove the object; False when there was nothing to remove."""
        ...

    async def list(self, folder: str) -> list[str]:
        """Media paths of every object under the folder ``folder`` (sorted; [] when none)."""
        ...

    async def delete_prefix(self, folder: str) -> int:
        """Remove every object under the folder ``folder``; how many were removed."""
        ...


def _strong(etag: str) -> str:
    """An ETag as a quoted strong validator (S3 may answer it quoted or not)."""
    etag = etag.strip()
    return etag if etag.startswith('"') else f'"{etag}"'


class FileOrigin:
    """The media root on a filesystem (a PVC in a pod)."""

    kind = "file"

    def __init__(self, root_real: str) -> None:
        self.root_real = root_real

    def ready(self) -> bool:
        return os.path.isdir(self.root_real)

    def _target(self, relative: str) -> str:
        target = writable_target(self.root_real, relative)
        if target is None:
            raise NotWritable("the path is not a file that can be written")
        return target

    def check_writable(self, relative: str) -> None:
        self._target(relative)

    async def exists(self, relative: str) -> bool:
        path = os.path.join(self.root_real, relative)
        return os.path.lexists(path)  # noqa: ASYNC240 -- metadata calls, as nginx does inline

    async def write(self, relative: str, chunks: AsyncIterator[bytes]) -> Stored:
        import asyncio

        key = self._target(relative)
        loop = asyncio.get_running_loop()
        tmp_dir = os.path.join(self.root_real, ".vod-tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        stored = False
        try:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            await loop.run_in_executor(None, os.fsync, fd)
            os.fchmod(fd, 0o644)
            os.replace(tmp_path, key)
            stored = True
            await loop.run_in_executor(None, fsync_dir, os.path.dirname(key))
        finally:
            os.close(fd)
            if not stored:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
        info = os.stat(key)
        return Stored(size, str(make_etag(info.st_ino, info.st_size, info.st_mtime_ns)))

    async def read(self, relative: str, start: int, end: int) -> bytes:
        opened = open_regular_file(self.root_real, relative)
        if opened is None:
            raise FileNotFoundError(relative)
        try:
            return os.pread(opened, end - start, start)
        finally:
            os.close(opened)

    async def stream(self, relative: str, start: int, end: int) -> AsyncIterator[bytes]:
        offset = start
        while offset < end:
            chunk = await self.read(relative, offset, min(end, offset + STREAM_CHUNK_BYTES))
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    async def delete(self, relative: str) -> bool:
        opened = open_regular_file(self.root_real, relative)
        if opened is None:
            return False
        os.close(opened)
        try:
            os.unlink(os.path.join(self.root_real, relative))
        except FileNotFoundError:
            return False
        return True

    def _folder(self, folder: str) -> str | None:
        """The real folder inside the root, or None (absent, a symlink, not a folder)."""
        inside = media_path("/" + folder.strip("/"))
        if not inside:
            raise NotWritable(f"{folder!r} is not a folder inside the origin")
        path = os.path.join(self.root_real, inside)
        if os.path.islink(path) or not os.path.isdir(path):
            return None
        return path

    async def list(self, folder: str) -> list[str]:
        path = self._folder(folder)
        return [] if path is None else _files_under(path, self.root_real)

    async def delete_prefix(self, folder: str) -> int:
        found = await self.list(folder)
        path = self._folder(folder)
        if path is not None:
            shutil.rmtree(path)
        return len(found)


def _files_under(folder: str, root: str) -> list[str]:
    """Paths (relative to ``root``) of the files under ``folder``, sorted."""
    found: list[str] = []
    for parent, _dirs, files in os.walk(folder):
        found.extend(os.path.relpath(os.path.join(parent, name), root) for name in files)
    return sorted(found)


def s3_key(prefix: str, relative: str) -> str:
    """The object key of a media path: ``prefix`` without outer slashes, ``/``, the path (as the
    data plane's S3 origin names objects)."""
    trimmed = prefix.strip("/")
    return f"{trimmed}/{relative}" if trimmed else relative


def _read_secret(path: Path, setting: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"VOD_{setting}: cannot read {path}: {exc.strerror}") from None


def s3_store(settings: Settings) -> S3Store:
    """The obstore client for the S3 settings (credentials and CA read from their files)."""
    from obstore.store import S3Store

    assert settings.s3_bucket is not None
    assert settings.s3_endpoint is not None
    config: dict[str, Any] = {
        "endpoint": settings.s3_endpoint,
        "region": settings.s3_region,
        "virtual_hosted_style_request": not settings.s3_path_style,
    }
    if settings.s3_access_key_id_file and settings.s3_secret_access_key_file:
        config["access_key_id"] = _read_secret(
            settings.s3_access_key_id_file, "S3_ACCESS_KEY_ID_FILE"
        )
        config["secret_access_key"] = _read_secret(
            settings.s3_secret_access_key_file, "S3_SECRET_ACCESS_KEY_FILE"
        )
    client: dict[str, Any] = {
        "allow_http": settings.s3_endpoint.startswith("http://"),
        "connect_timeout": timedelta(seconds=settings.origin_connect_timeout_seconds),
    }
    if settings.s3_ca_file is not None:
        client["root_certificate"] = _read_secret(settings.s3_ca_file, "S3_CA_FILE")
    retry = {
        "max_retries": 2,
        "retry_timeout": timedelta(seconds=max(settings.origin_timeout_seconds, 1)),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=1),
            "base": 2,
        },
    }
    return S3Store(
        settings.s3_bucket,
        config=config,  # type: ignore[arg-type]
        client_options=client,  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
    )


def origin_failure(exc: BaseException) -> OriginError:
    """The client's answer to an S3 failure: 504 for a timeout, 502 otherwise, reason named."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, UnauthenticatedError | PermissionDeniedError):
        return OriginError(502, f"the S3 origin refused the credentials: {text}")
    if "timed out" in text.lower():  # reqwest's words (not obstore's "retry_timeout: 10s")
        return OriginError(504, f"the S3 origin timed out: {text}")
    return OriginError(502, f"the S3 origin failed: {text}")


class S3Origin:
    """A bucket (and key prefix) of an S3-compatible object store."""

    kind = "s3"

    def __init__(self, settings: Settings) -> None:
        self.store = s3_store(settings)
        self.prefix = settings.s3_prefix

    def ready(self) -> bool:
        return True

    def check_writable(self, relative: str) -> None:
        return None

    async def exists(self, relative: str) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            await obstore.head_async(self.store, s3_key(self.prefix, relative))
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin for a 404
            return False
        except Exception as exc:
            raise origin_failure(exc) from None
        return True

    async def write(self, relative: str, chunks: AsyncIterator[bytes]) -> Stored:
        import obstore

        key = s3_key(self.prefix, relative)
        writer = obstore.open_writer_async(
            self.store, key, buffer_size=S3_PART_BYTES, max_concurrency=S3_PARTS_IN_FLIGHT
        )
        size = 0
        try:
            pending = bytearray()
            async for chunk in chunks:  # the source's exceptions pass through unchanged
                size += len(chunk)
                pending += chunk
                if len(pending) >= S3_WRITE_BYTES:
                    await _send(writer, bytes(pending))
                    pending.clear()
            if pending:
                await _send(writer, bytes(pending))
        except BaseException as exc:
            # obstore aborts (AbortMultipartUpload, or nothing sent yet) only through __aexit__
            # with an exception; the original exception is the one that matters.
            with contextlib.suppress(Exception):
                await writer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        try:
            await writer.close()  # the single PUT, or CompleteMultipartUpload
            meta = await obstore.head_async(self.store, key)
        except Exception as exc:
            raise origin_failure(exc) from None
        return Stored(size, _strong(meta["e_tag"] or ""))

    async def read(self, relative: str, start: int, end: int) -> bytes:
        import obstore

        key = s3_key(self.prefix, relative)
        try:
            return bytes(await obstore.get_range_async(self.store, key, start=start, end=end))
        except Exception as exc:
            raise origin_failure(exc) from None

    async def stream(self, relative: str, start: int, end: int) -> AsyncIterator[bytes]:
        import obstore

        key = s3_key(self.prefix, relative)
        try:
            result = await obstore.get_async(self.store, key, options={"range": (start, end)})
            stream = result.stream(min_chunk_size=STREAM_CHUNK_BYTES)
        except Exception as exc:
            raise origin_failure(exc) from None
        while True:
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise origin_failure(exc) from None
            yield bytes(chunk)

    async def delete(self, relative: str) -> bool:
        import obstore

        if not await self.exists(relative):
            return False
        try:
            await obstore.delete_async(self.store, s3_key(self.prefix, relative))
        except Exception as exc:
            raise origin_failure(exc) from None
        return True

    def _folder_key(self, folder: str) -> str:
        inside = media_path("/" + folder.strip("/"))
        if not inside:
            raise NotWritable(f"{folder!r} is not a folder inside the origin")
        return s3_key(self.prefix, inside)

    async def _keys(self, folder: str) -> list[str]:
        import obstore

        key = self._folder_key(folder)  # object_store lists whole path segments: a/b, not a/bc
        keys: list[str] = []
        try:
            async for batch in obstore.list(self.store, prefix=key, chunk_size=S3_LIST_CHUNK):
                keys.extend(meta["path"] for meta in batch)
        except Exception as exc:
            raise origin_failure(exc) from None
        return sorted(keys)

    async def list(self, folder: str) -> list[str]:
        skip = len(s3_key(self.prefix, "x")) - 1
        return [key[skip:] for key in await self._keys(folder)]

    async def delete_prefix(self, folder: str) -> int:
        import obstore

        keys = await self._keys(folder)
        try:
            for start in range(0, len(keys), S3_LIST_CHUNK):  # DeleteObjects: 1000 keys a call
                await obstore.delete_async(self.store, keys[start : start + S3_LIST_CHUNK])
        except Exception as exc:
            raise origin_failure(exc) from None
        return len(keys)


async def _send(writer: AsyncWritableFile, data: bytes) -> None:
    """One write into obstore's buffered writer; its failures become OriginError."""
    try:
        await writer.write(data)
    except Exception as exc:
        raise origin_failure(exc) from None


def open_origin(settings: Settings) -> Origin:
    """The origin ``VOD_ORIGIN`` names (the HTTP origin is read-only)."""
    if settings.origin == "s3":
        return S3Origin(settings)
    if settings.origin == "http":
        return ReadOnlyOrigin()
    return FileOrigin(os.path.realpath(settings.media_root))


class ReadOnlyOrigin:
    """An origin the Python side cannot write (HTTP): PUT and DELETE get 405."""

    kind = "http"

    def ready(self) -> bool:
        return True

    def check_writable(self, relative: str) -> None:
        raise ReadOnly("the HTTP origin is read-only")

    async def exists(self, relative: str) -> bool:
        return False

    async def write(self, relative: str, chunks: AsyncIterator[bytes]) -> Stored:
        raise ReadOnly("the HTTP origin is read-only")

    async def read(self, relative: str, start: int, end: int) -> bytes:
        raise ReadOnly("the HTTP origin is read-only")

    def stream(self, relative: str, start: int, end: int) -> AsyncIterator[bytes]:
        raise ReadOnly("the HTTP origin is read-only")

    async def delete(self, relative: str) -> bool:
        raise ReadOnly("the HTTP origin is read-only")

    async def list(self, folder: str) -> list[str]:
        raise ReadOnly("the HTTP origin cannot be listed")

    async def delete_prefix(self, folder: str) -> int:
        raise ReadOnly("the HTTP origin is read-only")
