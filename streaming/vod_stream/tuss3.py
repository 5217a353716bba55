"""Resumable (tus) uploads on the S3 origin: the ``UploadStore`` of ``vod_stream.tusstore`` kept
in the bucket, under the platform's prefix, so any replica continues any upload::

    <prefix>/.vod-uploads/<id>/info.json    the upload (UploadInfo) and its state, one object
                               tail-<rand>  the bytes after the last whole part (< PART_BYTES)
                               lock         the PATCH lock (``vod_stream.s3lock``: a lease)

The bytes go into an S3 multipart upload of the target key, created with the upload. S3 wants
every part but the last to be at least 5 MiB (and some stores all of them the same size), while
a tus PATCH may carry any number of bytes: so every part is exactly ``PART_BYTES``, and what a
PATCH leaves after its last whole part is stored as a small object, the tail, prepended to the
next PATCH's bytes (tusd's s3store does the same with its ``.part``). The offset is
``parts x PART_BYTES + tail size``.

``info.json`` is the commit point: it names the parts' ETags and the tail, and is only ever
replaced conditionally on the ETag read when the session started (``If-Match``), so even a
request whose lock lease ran out cannot overwrite a newer state. A new tail gets a new name and
the old one is deleted after the commit: a crash leaves at most an unreferenced object, removed
with the upload. A PATCH without a checksum commits after each part (a cut keeps what arrived,
as the file store does); a checksummed one commits only once its digest matched, and a mismatch
commits nothing: the parts it uploaded carry numbers no state names, and are replaced by the
next PATCH's. Completion is CompleteMultipartUpload (the object appears whole, at once, which
is what the operator's completion probe waits for), or a single PUT when the upload is smaller
than a part; then ``info.json`` is marked completed and stays until it expires. Termination and
expiry abort the multipart upload (S3 deletes its parts) and delete every object of the upload.

The multipart calls come from the data plane's Rust ``object_store`` client
(``vod_stream._dataplane.S3Multipart``, built from the same settings): ``obstore`` only has a
writer whose parts cannot outlive one process. Everything else goes through ``obstore``.
A crash between CreateMultipartUpload and the creation of ``info.json`` leaves a multipart
upload no state names: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from vod_stream._dataplane import S3Multipart
from vod_stream.config import Settings, origin_config
from vod_stream.s3lock import LeaseLock, LostLock
from vod_stream.storage import OriginError, origin_failure, s3_key, s3_store
from vod_stream.tusstore import (
    ID_PATTERN,
    UPLOADS_DIR,
    CompletedSession,
    Locked,
    StorageError,
    UploadInfo,
    UploadSession,
    UploadStatus,
)

if TYPE_CHECKING:
    from obstore.store import S3Store as ObjectStore

#: Every part but the last: S3's minimum part size.
PART_BYTES = 5 * 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class State:
    """Where the upload's bytes are: whole parts of the multipart upload, then the tail."""

    multipart: str
    parts: tuple[str, ...] = ()  # ETags of parts 1..n, each PART_BYTES long
    tail: str = ""  # name of the tail object ("" when there is none)
    tail_size: int = 0
    activity: float = field(default_factory=time.time)

    @property
    def offset(self) -> int:
        return len(self.parts) * PART_BYTES + self.tail_size


@dataclass(frozen=True)
class Record:
    """``info.json`` as read: the upload, its state, and the ETag to replace it with."""

    info: UploadInfo
    state: State
    etag: str


def encode_record(info: UploadInfo, state: State) -> bytes:
    payload = {"info": json.loads(info.to_json()), "state": asdict(state)}
    return json.dumps(payload, sort_keys=True).encode()


def decode_record(data: bytes, etag: str) -> Record:
    payload = json.loads(data)
    state = payload["state"]
    return Record(
        UploadInfo(**payload["info"]), State(**{**state, "parts": tuple(state["parts"])}), etag
    )


class S3Store:
    """Uploads kept in the bucket under ``<prefix>/.vod-uploads`` (shared by every replica)."""

    def __init__(self, settings: Settings) -> None:
        self.store: ObjectStore = s3_store(settings)
        self.prefix = settings.s3_prefix
        self.multipart = S3Multipart(json.dumps(origin_config(settings)))
        self.lease = settings.tus_lock_lease_seconds

    def key(self, upload_id: str, name: str) -> str:
        return s3_key(self.prefix, f"{UPLOADS_DIR}/{upload_id}/{name}")

    def target_key(self, info: UploadInfo) -> str:
        return s3_key(self.prefix, info.target)

    async def call(self, method: Callable[..., T], *args: object) -> T:
        """One multipart call, in a thread (it releases the GIL); its failure as OriginError
        (FileNotFoundError, a multipart upload that is gone, passes through)."""
        try:
            return await asyncio.to_thread(method, *args)
        except ConnectionError as exc:
            raise OriginError(502, f"the S3 origin failed: {exc}") from None

    async def read(self, upload_id: str) -> Record | None:
        import obstore
        from obstore.exceptions import NotFoundError

        if not ID_PATTERN.fullmatch(upload_id):
            return None
        try:
            result = await obstore.get_async(self.store, self.key(upload_id, "info.json"))
            data = bytes(await result.bytes_async())
        except (NotFoundError, FileNotFoundError):
            return None
        except Exception as exc:
            raise origin_failure(exc) from None
        return decode_record(data, result.meta["e_tag"] or "")

    async def replace(self, record: Record, info: UploadInfo, state: State) -> Record:
        """Write the new state only over the one read (``StorageError`` when it changed)."""
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        try:
            done = await obstore.put_async(
                self.store,
                self.key(info.id, "info.json"),
                encode_record(info, state),
                mode={"e_tag": record.etag},
            )
        except PreconditionError:
            raise StorageError("the upload changed meanwhile: ask HEAD for its offset") from None
        except (NotFoundError, FileNotFoundError):
            raise FileNotFoundError(info.id) from None
        except Exception as exc:
            raise origin_failure(exc) from None
        return Record(info, state, done["e_tag"] or "")

    async def create(self, info: UploadInfo) -> None:
        import obstore

        try:
            multipart = await self.call(self.multipart.create, self.target_key(info))
        except FileNotFoundError as exc:  # no such bucket
            raise OriginError(502, f"the S3 origin refused the upload: {exc}") from None
        try:
            await obstore.put_async(
                self.store, self.key(info.id, "info.json"), encode_record(info, State(multipart)),
                mode="create",
            )  # fmt: skip
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.call(self.multipart.abort, self.target_key(info), multipart)
            raise origin_failure(exc) from None

    async def load(self, upload_id: str) -> UploadInfo | None:
        record = await self.read(upload_id)
        return None if record is None else record.info

    async def status(self, upload_id: str) -> UploadStatus | None:
        record = await self.read(upload_id)
        if record is None:
            return None
        info = record.info
        offset = info.length if info.completed else record.state.offset
        return UploadStatus(info, offset, record.state.activity)

    async def offset(self, upload_id: str) -> int:
        record = await self.read(upload_id)
        if record is None:
            return 0
        return record.info.length if record.info.completed else record.state.offset

    async def last_activity(self, upload_id: str) -> float:
        record = await self.read(upload_id)
        return 0.0 if record is None else record.state.activity

    @contextlib.asynccontextmanager
    async def session(self, upload_id: str, wait_seconds: float) -> AsyncIterator[UploadSession]:
        key = self.key(upload_id, "lock")
        lock = await LeaseLock.acquire(self.store, key, self.lease, wait_seconds)
        try:
            record = await self.read(upload_id)
            if record is None:
                raise FileNotFoundError(upload_id)  # terminated while we waited
            if record.info.completed:
                yield CompletedSession(record.info)
                return
            try:
                yield S3Session(self, record, lock)
            except LostLock:
                raise Locked(upload_id) from None
        finally:
            await lock.release()

    async def terminate(self, upload_id: str) -> bool:
        """Remove the upload: its state first (every replica sees it gone at once), then its
        multipart upload (S3 deletes the parts) and its other objects."""
        import obstore

        record = await self.read(upload_id)
        if record is None:
            return False
        try:
            await obstore.delete_async(self.store, self.key(upload_id, "info.json"))
        except Exception as exc:
            raise origin_failure(exc) from None
        if not record.info.completed:
            with contextlib.suppress(FileNotFoundError):
                target = self.target_key(record.info)
                await self.call(self.multipart.abort, target, record.state.multipart)
        await self._delete(await self._objects(f"{UPLOADS_DIR}/{upload_id}"))
        return True

    async def remove_expired(self, expiry_seconds: float, now: float | None = None) -> int:
        """Remove uploads idle for ``expiry_seconds`` (unless a PATCH holds their lock), and
        objects as old that belong to no upload (left by a crash); the count of uploads."""
        now = time.time() if now is None else now
        grouped: dict[str, list[tuple[str, float]]] = {}
        for key, modified in (await self._objects(UPLOADS_DIR)).items():
            upload_id = key.rsplit("/", 2)[-2]
            grouped.setdefault(upload_id, []).append((key, modified))
        removed = 0
        for upload_id, objects in grouped.items():
            record = await self.read(upload_id)
            if record is None:
                if all(modified + expiry_seconds < now for _, modified in objects):
                    await self._delete({key: 0.0 for key, _ in objects})
                continue
            if record.state.activity + expiry_seconds >= now:
                continue
            try:
                key = self.key(upload_id, "lock")
                lock = await LeaseLock.acquire(self.store, key, self.lease, 0)
            except Locked:
                continue
            try:
                removed += int(await self.terminate(upload_id))
            finally:
                await lock.release()
        return removed

    async def _objects(self, folder: str) -> dict[str, float]:
        """Keys under ``<prefix>/<folder>/`` and when each was last modified."""
        import obstore

        found: dict[str, float] = {}
        try:
            prefix = s3_key(self.prefix, folder)
            async for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
                for meta in batch:
                    found[meta["path"]] = meta["last_modified"].timestamp()
        except Exception as exc:
            raise origin_failure(exc) from None
        return found

    async def _delete(self, keys: dict[str, float]) -> None:
        import obstore

        if keys:
            try:
                await obstore.delete_async(self.store, sorted(keys))
            except Exception as exc:
                raise origin_failure(exc) from None


class S3Session:
    """An upload in the bucket whose lock this request holds."""

    def __init__(self, store: S3Store, record: Record, lock: LeaseLock) -> None:
        self._store = store
        self._record = record
        self._lock = lock
        self._buffer = bytearray()  # the tail, then the bytes appended: not yet in a part
        self._loaded = False  # whether the tail object was read into the buffer
        self._uploaded: list[str] = []  # ETags of parts uploaded since the last commit
        self._unverified = False
        self._dirty = False

    @property
    def offset(self) -> int:
        if self._record.info.completed:
            return self._record.info.length
        state = self._record.state
        parts = (len(state.parts) + len(self._uploaded)) * PART_BYTES
        return parts + (len(self._buffer) if self._loaded else state.tail_size)

    @property
    def completed(self) -> bool:
        return False

    async def _load_tail(self) -> None:
        if self._loaded:
            return
        import obstore

        tail = self._record.state.tail
        if tail:
            key = self._store.key(self._record.info.id, tail)
            try:
                result = await obstore.get_async(self._store.store, key)
                self._buffer = bytearray(await result.bytes_async())
            except Exception as exc:
                raise origin_failure(exc) from None
        self._loaded = True

    def begin_unverified(self) -> None:
        self._unverified = True

    async def append(self, chunk: bytes) -> None:
        self._lock.check()
        await self._load_tail()
        self._buffer += chunk
        self._dirty = True
        while len(self._buffer) >= PART_BYTES:
            info, state = self._record.info, self._record.state
            index = len(state.parts) + len(self._uploaded)
            part = bytes(self._buffer[:PART_BYTES])
            etag = await self._store.call(
                self._store.multipart.put_part,
                self._store.target_key(info),
                state.multipart,
                index,
                part,
            )
            self._uploaded.append(etag)
            del self._buffer[:PART_BYTES]
            if not self._unverified:
                await self._save(keep_tail=False)

    async def _save(self, keep_tail: bool) -> None:
        """Commit the parts uploaded and, with ``keep_tail``, the buffer as the new tail."""
        import obstore

        record = self._record
        old_tail = record.state.tail
        tail, size = "", 0
        if keep_tail and self._buffer:
            tail, size = f"tail-{secrets.token_hex(8)}", len(self._buffer)
            try:
                key = self._store.key(record.info.id, tail)
                await obstore.put_async(self._store.store, key, bytes(self._buffer))
            except Exception as exc:
                raise origin_failure(exc) from None
        parts = record.state.parts + tuple(self._uploaded)
        state = replace(record.state, parts=parts, tail=tail, tail_size=size, activity=time.time())
        self._record = await self._store.replace(record, record.info, state)
        self._uploaded = []
        self._dirty = not keep_tail and bool(self._buffer)  # bytes still only in memory
        if old_tail and old_tail != tail:
            with contextlib.suppress(Exception):
                key = self._store.key(record.info.id, old_tail)
                await obstore.delete_async(self._store.store, key)

    async def rollback(self, offset: int) -> None:
        self._uploaded = []
        self._buffer = bytearray()
        self._loaded = False
        self._unverified = False
        self._dirty = False

    async def commit(self) -> int:
        if self._dirty or self._uploaded:
            await self._load_tail()
            await self._save(keep_tail=True)
        self._unverified = False
        self._dirty = False
        return self.offset

    async def complete(self) -> None:
        """CompleteMultipartUpload with the tail as its last part (a single PUT when there is
        no whole part), then the completed marker."""
        import obstore

        self._lock.check()
        await self._load_tail()
        store, record = self._store, self._record
        target, multipart = store.target_key(record.info), record.state.multipart
        parts = list(record.state.parts)
        try:
            if parts:
                if self._buffer:
                    put = store.multipart.put_part
                    data = bytes(self._buffer)
                    parts.append(await store.call(put, target, multipart, len(parts), data))
                await store.call(store.multipart.complete, target, multipart, parts)
            else:
                try:
                    await obstore.put_async(store.store, target, bytes(self._buffer))
                except Exception as exc:
                    raise origin_failure(exc) from None
                with contextlib.suppress(FileNotFoundError):
                    await store.call(store.multipart.abort, target, multipart)
        except FileNotFoundError:
            if not await self._already_complete(target):
                raise StorageError("the multipart upload is gone: terminate the upload") from None
        done = replace(record.state, parts=(), tail="", tail_size=0, activity=time.time())
        self._record = await store.replace(record, replace(record.info, completed=True), done)
        if record.state.tail:
            with contextlib.suppress(Exception):
                key = store.key(record.info.id, record.state.tail)
                await obstore.delete_async(store.store, key)

    async def _already_complete(self, target: str) -> bool:
        """Whether an earlier completion got through but its marker was not written."""
        import obstore

        try:
            meta = await obstore.head_async(self._store.store, target)
        except Exception:
            return False
        return int(meta["size"]) == self._record.info.length
