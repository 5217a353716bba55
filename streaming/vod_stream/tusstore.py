"""Where a resumable (tus) upload's state lives: in the origin, never in a pod.

``UploadStore`` is the interface the protocol (``vod_stream.tus``) needs; ``FileStore`` keeps it
on the shared media volume, so any replica continues any upload::

    <media_root>/.vod-uploads/<id>/info.json   what the upload is (written once, atomically)
                                    data       the bytes received: its length IS the offset
                                    lock       the PATCH lock (an OFD lock, see below)
                                    pending    offset before an unverified (checksummed) PATCH

The lock is an open-file-description lock (``F_OFD_SETLK``) on ``lock``: held by one request in
one process on one node at a time, also between two requests of the same process, and released
by the kernel when its holder dies (on NFS, after the lock lease), so a crashed replica never
leaves it behind. ``pending`` is the journal of a PATCH whose bytes are not yet verified: the next
lock holder truncates ``data`` back to it. A completed upload's data is renamed over its target
(same filesystem: atomic) and only ``info.json`` stays, marked complete, until it expires.

The S3 origin's implementation is ``vod_stream.tuss3.S3Store`` (multipart parts as ``data``).
Every call of the interface is async: on S3 each one is a request to the bucket. A session's
bytes go in through ``append`` as they arrive; the protocol hashes them on the way (a checksum
is verified without reading anything back, which an S3 multipart upload could not do).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from vod_stream.paths import fsync_dir, writable_target

UPLOADS_DIR = ".vod-uploads"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
LOCK_POLL_SECONDS = 0.05
_FLOCK = struct.Struct("hhqqi")  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid


@dataclass(frozen=True)
class UploadInfo:
    """What one upload is: its size, where it goes, its client metadata."""

    id: str
    length: int
    target: str  # root-relative path of the object once complete
    metadata: Mapping[str, str] = field(default_factory=dict)
    raw_metadata: str = ""  # the Upload-Metadata header as received (echoed by HEAD)
    created: float = 0.0
    scoped: bool = False  # created with an upload token (its Location carries the token)
    completed: bool = False

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "metadata": dict(self.metadata)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UploadInfo:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class UploadStatus:
    """An upload as HEAD (and the checks before a PATCH) see it, read at once."""

    info: UploadInfo
    offset: int  # the length once completed
    last_activity: float


class Locked(Exception):
    """Another request holds the upload's lock."""


class StorageError(Exception):
    """The target cannot be written (a folder, outside the root)."""


class UploadSession(Protocol):
    """An upload whose lock is held: the only way to change its bytes."""

    @property
    def offset(self) -> int: ...

    @property
    def completed(self) -> bool: ...

    def begin_unverified(self) -> None:
        """Bytes appended from here may be undone (``rollback``) until ``commit``."""
        ...

    async def append(self, chunk: bytes) -> None:
        """Add bytes at the offset (OSError with a NO_SPACE errno when the store is full)."""
        ...

    async def rollback(self, offset: int) -> None:
        """Forget the bytes appended since ``begin_unverified`` (``offset``: the offset then)."""
        ...

    async def commit(self) -> int:
        """Make the bytes appended durable; the new offset."""
        ...

    async def complete(self) -> None:
        """Put the whole upload at its target (atomically) and mark the upload complete."""
        ...


class UploadStore(Protocol):
    """The state of every upload, shared by every replica."""

    async def create(self, info: UploadInfo) -> None: ...

    async def load(self, upload_id: str) -> UploadInfo | None:
        """The upload, None when there is none (or ``upload_id`` is not an id)."""
        ...

    async def status(self, upload_id: str) -> UploadStatus | None:
        """The upload, its offset and its last activity in one read (None as ``load``)."""
        ...

    async def offset(self, upload_id: str) -> int: ...

    async def last_activity(self, upload_id: str) -> float: ...

    def session(
        self, upload_id: str, wait_seconds: float
    ) -> contextlib.AbstractAsyncContextManager[UploadSession]:
        """The upload with its lock held (waiting up to ``wait_seconds``), else ``Locked``;
        FileNotFoundError when it is gone."""
        ...

    async def terminate(self, upload_id: str) -> bool: ...

    async def remove_expired(self, expiry_seconds: float, now: float | None = None) -> int: ...


def new_id() -> str:
    return secrets.token_hex(16)


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def try_lock(fd: int) -> bool:
    """Take the write lock of ``fd``'s open file description; False when someone holds it."""
    request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except OSError as exc:
        if exc.errno in (11, 13):  # EAGAIN, EACCES: held elsewhere
            return False
        raise
    return True


class FileSession:
    """An upload on the shared volume whose lock this request holds."""

    def __init__(self, store: FileStore, info: UploadInfo, fd: int) -> None:
        self._store = store
        self._info = info
        self._fd = fd
        self._pending = os.path.join(store.folder(info.id), "pending")

    @property
    def offset(self) -> int:
        return os.fstat(self._fd).st_size

    @property
    def completed(self) -> bool:
        return False

    async def append(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    def recover(self) -> None:
        """Undo the unverified bytes a dead lock holder left."""
        try:
            with open(self._pending) as journal:
                offset = int(journal.read().strip() or 0)
        except FileNotFoundError:
            return
        except ValueError:
            offset = 0
        if offset < self.offset:
            os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        os.unlink(self._pending)

    def begin_unverified(self) -> None:
        """Bytes written from here may be undone (a checksum not yet compared)."""
        _write_atomically(self._pending, str(self.offset))

    async def rollback(self, offset: int) -> None:
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pending)

    async def commit(self) -> int:
        await asyncio.get_running_loop().run_in_executor(None, self._sync)
        return self.offset

    def _sync(self) -> None:
        os.fsync(self._fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pending)

    async def complete(self) -> None:
        """Move the object into place atomically; only a completed marker stays."""
        store = self._store
        target = writable_target(store.root_real, self._info.target)
        if target is None:
            raise StorageError(f"/{self._info.target} is not a file that can be written")
        os.fsync(self._fd)
        os.fchmod(self._fd, 0o644)
        os.replace(os.path.join(store.folder(self._info.id), "data"), target)
        fsync_dir(os.path.dirname(target))
        store.write_info(replace(self._info, completed=True))


class FileStore:
    """Uploads kept under ``<media_root>/.vod-uploads`` (shared by every replica)."""

    def __init__(self, root_real: str) -> None:
        self.root_real = root_real
        self.base = os.path.join(root_real, UPLOADS_DIR)

    def folder(self, upload_id: str) -> str:
        if not ID_PATTERN.fullmatch(upload_id):
            raise ValueError("not an upload id")
        return os.path.join(self.base, upload_id)

    def write_info(self, info: UploadInfo) -> None:
        _write_atomically(os.path.join(self.folder(info.id), "info.json"), info.to_json())

    async def create(self, info: UploadInfo) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._create, info)

    def _create(self, info: UploadInfo) -> None:
        """The upload's folder appears complete (info, empty data) or not at all."""
        os.makedirs(self.base, exist_ok=True)
        staging = os.path.join(self.base, f".new-{info.id}")
        os.mkdir(staging)
        try:
            with open(os.path.join(staging, "info.json"), "w") as out:
                out.write(info.to_json())
                out.flush()
                os.fsync(out.fileno())
            os.close(os.open(os.path.join(staging, "data"), os.O_WRONLY | os.O_CREAT, 0o600))
            os.close(os.open(os.path.join(staging, "lock"), os.O_WRONLY | os.O_CREAT, 0o600))
            os.rename(staging, self.folder(info.id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.base)

    async def load(self, upload_id: str) -> UploadInfo | None:
        return self._load(upload_id)

    def _load(self, upload_id: str) -> UploadInfo | None:
        if not ID_PATTERN.fullmatch(upload_id):
            return None
        try:
            with open(os.path.join(self.folder(upload_id), "info.json")) as source:
                return UploadInfo.from_json(source.read())
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def status(self, upload_id: str) -> UploadStatus | None:
        info = self._load(upload_id)
        if info is None:
            return None
        offset = info.length if info.completed else await self.offset(upload_id)
        return UploadStatus(info, offset, self._last_activity(upload_id))

    async def offset(self, upload_id: str) -> int:
        try:
            return os.stat(os.path.join(self.folder(upload_id), "data")).st_size
        except FileNotFoundError:
            return 0

    async def last_activity(self, upload_id: str) -> float:
        return self._last_activity(upload_id)

    def _last_activity(self, upload_id: str) -> float:
        """When the upload last received bytes (or was created, or completed)."""
        folder = self.folder(upload_id)
        times = []
        for name in ("data", "info.json"):
            with contextlib.suppress(FileNotFoundError):
                times.append(os.stat(os.path.join(folder, name)).st_mtime)
        return max(times, default=0.0)

    @contextlib.asynccontextmanager
    async def session(self, upload_id: str, wait_seconds: float) -> AsyncIterator[UploadSession]:
        """The upload with its lock held (waiting up to ``wait_seconds``), else ``Locked``."""
        folder = self.folder(upload_id)
        lock_fd = os.open(
            os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        data_fd = -1
        try:
            deadline = time.monotonic() + wait_seconds
            while not try_lock(lock_fd):
                if time.monotonic() >= deadline:
                    raise Locked(upload_id)
                await asyncio.sleep(LOCK_POLL_SECONDS)
            info = self._load(upload_id)
            if info is None:
                raise FileNotFoundError(upload_id)  # terminated while we waited
            if info.completed:
                yield CompletedSession(info)
                return
            data_fd = os.open(
                os.path.join(folder, "data"), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
            )
            session = FileSession(self, info, data_fd)
            session.recover()
            yield session
        finally:
            if data_fd >= 0:
                os.close(data_fd)
            os.close(lock_fd)  # releases the lock

    async def terminate(self, upload_id: str) -> bool:
        return self._terminate(upload_id)

    def _terminate(self, upload_id: str) -> bool:
        """Remove the upload's state; False when there was none. A rename first, so every
        replica sees it gone at once, even while the files are being removed."""
        folder = self.folder(upload_id)
        doomed = os.path.join(self.base, f".gone-{upload_id}-{secrets.token_hex(4)}")
        try:
            os.rename(folder, doomed)
        except FileNotFoundError:
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    async def remove_expired(self, expiry_seconds: float, now: float | None = None) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._remove_expired, expiry_seconds, now)

    def _remove_expired(self, expiry_seconds: float, now: float | None = None) -> int:
        """Remove uploads idle for ``expiry_seconds`` (unless a PATCH holds them) and any
        half-created or half-removed folder as old; the count of uploads removed."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.base))
        except OSError:
            return 0
        for entry in entries:
            try:
                if entry.name.startswith("."):
                    if entry.stat(follow_symlinks=False).st_mtime + expiry_seconds < now:
                        shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                if not ID_PATTERN.fullmatch(entry.name):
                    continue
                if self._last_activity(entry.name) + expiry_seconds >= now:
                    continue
                removed += self._remove_if_idle(entry.name)
            except OSError:
                continue
        return removed

    def _remove_if_idle(self, upload_id: str) -> int:
        """Remove the upload unless a PATCH holds its lock (held while removing); 1 if removed."""
        try:
            fd = os.open(os.path.join(self.folder(upload_id), "lock"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return int(self._terminate(upload_id))
        try:
            return int(try_lock(fd) and self._terminate(upload_id))
        finally:
            os.close(fd)


class CompletedSession:
    """A completed upload: its offset is its length, and nothing more is written."""

    def __init__(self, info: UploadInfo) -> None:
        self._info = info

    @property
    def offset(self) -> int:
        return self._info.length

    @property
    def completed(self) -> bool:
        return True

    def begin_unverified(self) -> None:
        raise StorageError("the upload is complete")

    async def append(self, chunk: bytes) -> None:
        raise StorageError("the upload is complete")

    async def rollback(self, offset: int) -> None:
        raise StorageError("the upload is complete")

    async def commit(self) -> int:
        return self._info.length

    async def complete(self) -> None:
        return None
