"""tus: header parsing, upload tokens, and the file store's lock, journal and expiry."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import pytest

from vod_stream import signing, uploadtokens
from vod_stream.tus import BadRequest, parse_checksum, parse_count, parse_metadata, upload_id_of
from vod_stream.tusstore import FileStore, Locked, UploadInfo, new_id

KEY = b"unit-test-key"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_metadata_pairs_decode_and_bad_ones_are_400() -> None:
    header = f"filename {b64(b'a b.mp4')},path {b64(b'uploads/x.mp4')},flag"
    assert parse_metadata(header) == {"filename": "a b.mp4", "path": "uploads/x.mp4", "flag": ""}
    assert parse_metadata(None) == {}
    not_utf8 = "k " + b64(bytes([0xFF]))
    for bad in ("a !", f"a {b64(b'x')},a {b64(b'y')}", "k a b", not_utf8):
        with pytest.raises(BadRequest):
            parse_metadata(bad)


def test_checksum_header() -> None:
    digest = hashlib.sha1(b"x").digest()
    assert parse_checksum(f"sha1 {b64(digest)}") == ("sha1", digest)
    assert parse_checksum(None) is None
    for bad in (f"crc32 {b64(digest)}", "sha1 !!!", f"sha256 {b64(digest)}"):
        with pytest.raises(BadRequest):
            parse_checksum(bad)


def test_counts_and_ids() -> None:
    assert parse_count("Upload-Offset", "42") == 42
    for bad in (None, "-1", "1.0", " 1", "\uff11", "9" * 20):
        with pytest.raises(BadRequest):
            parse_count("Upload-Offset", bad)
    assert upload_id_of("/tus") == upload_id_of("/tus/") == ""
    assert upload_id_of("/tus/abc") == "abc"
    assert upload_id_of("/tus/a/b") is None


def test_upload_token_is_scoped_to_one_target_and_never_a_playback_signature() -> None:
    now = time.time()
    token = uploadtokens.sign("uploads/a.mp4", int(now) + 60, "k", KEY)
    assert uploadtokens.check(token, {"k": KEY}.get, now) == ("uploads/a.mp4", "")
    moved = {**token, "path": "uploads/b.mp4"}
    assert uploadtokens.check(moved, {"k": KEY}.get, now)[0] is None
    assert uploadtokens.check(token, {"k": KEY}.get, now + 120)[0] is None  # expired
    assert uploadtokens.check(token, lambda _: None, now)[0] is None  # unknown key
    playback = signing.sign_params("/uploads/a.mp4", int(now) + 60, "k", KEY)
    assert uploadtokens.check({"path": "uploads/a.mp4", **playback}, {"k": KEY}.get, now)[0] is None
    root = signing.sign_params("/x", int(now) + 60, "k", KEY, prefix="/")
    assert uploadtokens.check({"path": "uploads/a.mp4", **root}, {"k": KEY}.get, now)[0] is None


async def make_upload(store: FileStore, length: int = 10) -> UploadInfo:
    info = UploadInfo(new_id(), length, "uploads/out.bin", {}, "", time.time())
    await store.create(info)
    return info


async def test_the_lock_is_exclusive_between_two_requests_of_one_process(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    info = await make_upload(store)
    async with store.session(info.id, 0) as held:
        assert held.offset == 0
        with pytest.raises(Locked):
            async with store.session(info.id, 0.2):
                pass
    async with store.session(info.id, 0) as again:  # released on exit
        assert again.offset == 0


async def test_unverified_bytes_of_a_dead_holder_are_undone(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    info = await make_upload(store)
    async with store.session(info.id, 0) as session:
        await session.append(b"abc")
        await session.commit()
        session.begin_unverified()
        await session.append(b"unchecked")  # the process dies here: no rollback, no commit
    assert await store.offset(info.id) == 12
    async with store.session(info.id, 0) as session:
        assert session.offset == 3
    assert not (tmp_path / ".vod-uploads" / info.id / "pending").exists()


async def test_completion_moves_the_object_and_keeps_a_marker(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    info = await make_upload(store, 4)
    async with store.session(info.id, 0) as session:
        await session.append(b"done")
        await session.complete()
    assert (tmp_path / "uploads/out.bin").read_bytes() == b"done"
    marker = await store.load(info.id)
    assert marker is not None
    assert marker.completed
    async with store.session(info.id, 0) as finished:
        assert finished.offset == 4


async def test_expiry_removes_idle_uploads_and_leftovers_but_not_locked_ones(
    tmp_path: Path,
) -> None:
    store = FileStore(str(tmp_path))
    idle, busy, fresh = [await make_upload(store) for _ in range(3)]
    leftover = tmp_path / ".vod-uploads" / f".new-{new_id()}"
    leftover.mkdir()
    old = time.time() - 1000
    for upload_id in (idle.id, busy.id):
        for name in ("data", "info.json"):
            os.utime(tmp_path / ".vod-uploads" / upload_id / name, (old, old))
    os.utime(leftover, (old, old))

    async with store.session(busy.id, 0):
        assert await store.remove_expired(100) == 1
    assert await store.load(idle.id) is None
    assert await store.load(busy.id) is not None
    assert await store.load(fresh.id) is not None
    assert not leftover.exists()
    assert await store.remove_expired(100) == 1  # busy, now released


def test_the_s3_state_round_trips_and_counts_whole_parts_and_the_tail() -> None:
    from vod_stream.tuss3 import PART_BYTES, State, decode_record, encode_record

    info = UploadInfo(new_id(), 3 * PART_BYTES, "uploads/out.bin", {"a": "b"}, "a Yg==", 1.0)
    state = State("mpu-1", ("etag-1", "etag-2"), "tail-x", 1234, 5.0)
    assert state.offset == 2 * PART_BYTES + 1234
    record = decode_record(encode_record(info, state), '"v1"')
    assert (record.info, record.state, record.etag) == (info, state, '"v1"')
    assert State("mpu-2").offset == 0
