"""Packaging into an object store (the S3 origin): fetch the source into scratch space, publish
a packaged revision folder, prune older revisions, unpublish an asset.

ffmpeg works in a local scratch folder (the Job's emptyDir); this module moves files between
that folder and the origin through ``vod_stream.storage`` (one origin interface). The order is
the file origin's: every object of the revision first, the master playlist last (a player never
gets a master whose variants or segments are missing), and older revisions are pruned only
after the new master is in place.

The source object is downloaded (streamed) rather than handed to ffmpeg as a presigned URL:
ffprobe, the ladder run, the poster and the storyboard each read it, so one download costs
less than several remote reads; the S3 CA bundle and credentials stay with obstore; and ffmpeg's
HTTP reader seeks badly on MP4s whose index sits at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

from vod_stream.storage import OriginError, S3Origin, origin_failure, s3_key

T = TypeVar("T")

#: Local file chunks read for one upload.
FILE_CHUNK = 1 << 20
#: Objects uploading at once while publishing a revision.
UPLOADS_IN_FLIGHT = 4
#: A master playlist is small; more than this is not one of ours.
MASTER_LIMIT = 1 << 20


class ObjectStore:
    """Synchronous calls into the S3 origin (the packager is a plain command)."""

    def __init__(self, origin: S3Origin) -> None:
        self.origin = origin
        self.loop = asyncio.new_event_loop()

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        self.loop.close()

    def exists(self, relative: str) -> bool:
        return self.run(self.origin.exists(relative))

    def fetch(self, relative: str, target: Path, on_progress: Callable[[float], None]) -> None:
        """Stream the object into ``target`` (no whole-object buffer)."""
        self.run(_fetch(self.origin, relative, target, on_progress))

    def read_text(self, relative: str) -> str | None:
        """A small object's text, or None when it does not exist."""
        if not self.exists(relative):
            return None
        return self.run(_read_all(self.origin, relative)).decode("utf-8", "replace")

    def put_file(self, relative: str, source: Path) -> None:
        self.run(self.origin.write(relative, file_chunks(source)))

    def put_files(self, items: Iterable[tuple[str, Path]]) -> None:
        """Upload every (media path, local file), a few at a time; the first failure raises."""
        self.run(_put_all(self.origin, list(items)))

    def put_text(self, relative: str, text: str) -> None:
        self.run(self.origin.write(relative, _one(text.encode())))

    def list(self, folder: str) -> list[str]:
        return self.run(self.origin.list(folder))

    def delete_prefix(self, folder: str) -> int:
        return self.run(self.origin.delete_prefix(folder))


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file in chunks (reads of scratch space are quick: done inline)."""
    with path.open("rb") as fh:
        while chunk := fh.read(FILE_CHUNK):
            yield chunk


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_all(origin: S3Origin, relative: str) -> bytes:
    parts = bytearray()
    async for chunk in origin.stream(relative, 0, MASTER_LIMIT):
        parts += chunk
    return bytes(parts)


async def _fetch(
    origin: S3Origin, relative: str, target: Path, on_progress: Callable[[float], None]
) -> None:
    size = await _size(origin, relative)
    done = 0
    with target.open("wb") as fh:
        async for chunk in origin.stream(relative, 0, size):
            fh.write(chunk)
            done += len(chunk)
            on_progress(done / size if size else 1.0)
    if done != size:
        raise OriginError(502, f"{relative}: got {done} of {size} bytes")


async def _size(origin: S3Origin, relative: str) -> int:
    import obstore

    try:
        meta = await obstore.head_async(origin.store, s3_key(origin.prefix, relative))
    except Exception as exc:
        raise origin_failure(exc) from None
    return int(meta["size"])


async def _put_all(origin: S3Origin, items: list[tuple[str, Path]]) -> None:
    gate = asyncio.Semaphore(UPLOADS_IN_FLIGHT)
    started: set[asyncio.Task[None] | None] = set()

    async def put(relative: str, source: Path) -> None:
        async with gate:
            started.add(asyncio.current_task())
            await origin.write(relative, file_chunks(source))

    tasks = [asyncio.ensure_future(put(relative, source)) for relative, source in items]
    try:
        await asyncio.gather(*tasks)
    finally:
        # The first failure ends the publish: uploads not started never start, and those under
        # way run to their end. Cancelling one would not stop an S3 request already sent (it
        # runs on obstore's own runtime), so its object could land after the caller's cleanup.
        for task in tasks:
            if task not in started:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def publish_revision(
    store: ObjectStore,
    asset: str,
    revision: str,
    folder: Path,
    master_text: str,
    previous: str | None,
) -> None:
    """Upload every file of ``folder`` under ``asset/revision/``, then ``asset/master.m3u8``.
    When an upload fails, no master is written and the objects of this revision that were put
    are removed (unless the live master, ``previous``, lists this same revision)."""
    prefix = f"{asset}/{revision}"
    try:
        store.put_files((f"{prefix}/{name}", path) for name, path in revision_files(folder))
    except BaseException:
        if revision != previous:
            with contextlib.suppress(Exception):
                store.delete_prefix(prefix)
        raise
    store.put_text(f"{asset}/master.m3u8", master_text)


def revision_files(folder: Path, skip: Iterable[str] = ()) -> list[tuple[str, Path]]:
    """(path relative to ``folder``, file) for every file under it, except ``skip``."""
    skipped = set(skip)
    found = []
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(parent) / name
            relative = path.relative_to(folder).as_posix()
            if relative not in skipped and not name.startswith("."):
                found.append((relative, path))
    return sorted(found)


def stale_revisions(asset_prefix: str, keys: Iterable[str], keep: set[str]) -> list[str]:
    """Revision folders (``asset_prefix/REV``) among ``keys`` that are not in ``keep``."""
    from vod_stream.package import REVISION

    stale = set()
    for key in keys:
        head = key[len(asset_prefix) + 1 :].split("/", 1)
        if len(head) == 2 and REVISION.match(head[0]) and head[0] not in keep:
            stale.add(head[0])
    return sorted(stale)
