"""The Python side's origin interface (storage.py) on both origins, in process: the building
blocks resumable uploads reuse (write a stream, read and stream ranges, compose, delete)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localcluster.s3server import S3Server
from tests.component.test_s3_uploads import pattern, s3_env
from vod_stream.config import Settings
from vod_stream.storage import S3_PART_BYTES, NotWritable, Origin, open_origin

pytestmark = pytest.mark.component


@pytest.fixture(params=["file", "s3"])
def origin(request, tmp_path: Path) -> Origin:
    root = tmp_path / "media"
    root.mkdir()
    env = {"VOD_MEDIA_ROOT": str(root)}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.make_bucket(f"orig-{uuid.uuid4().hex[:12]}")
        env.update(s3_env(s3, bucket, tmp_path / "creds"))
    return open_origin(Settings.from_env(env))


async def chunks(*blobs: bytes) -> AsyncIterator[bytes]:
    for blob in blobs:
        yield blob


async def chained(*streams: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for stream in streams:
        async for chunk in stream:
            yield chunk


async def test_parts_written_apart_compose_into_one_object(origin: Origin) -> None:
    first, second = pattern(S3_PART_BYTES + 5, 7), os.urandom(300_000)
    assert not await origin.exists("parts/1")
    one = await origin.write("parts/1", chunks(first[:100], first[100:]))
    await origin.write("parts/2", chunks(second))
    assert one.size == len(first)
    assert await origin.read("parts/1", 10, 20) == first[10:20]
    whole = await origin.write(
        "video.mp4",
        chained(origin.stream("parts/1", 0, len(first)), origin.stream("parts/2", 0, len(second))),
    )
    assert whole.size == len(first) + len(second)
    expected = first + second
    middle = len(first) - 3
    assert await origin.read("video.mp4", middle, middle + 10) == expected[middle : middle + 10]
    streamed = b"".join([c async for c in origin.stream("video.mp4", 1000, 2_000_000)])
    assert streamed == expected[1000:2_000_000]
    assert await origin.delete("parts/1")
    assert await origin.delete("parts/2")
    assert not await origin.delete("parts/2")
    assert not await origin.exists("parts/1")


async def test_a_failing_stream_leaves_nothing(origin: Origin) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (S3_PART_BYTES + 1)  # a multipart upload has begun on S3
        yield b"y" * S3_PART_BYTES
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await origin.write("broken.mp4", broken())
    assert not await origin.exists("broken.mp4")


async def test_list_and_delete_prefix_take_whole_folders_only(origin: Origin) -> None:
    names = ["a/b/master.m3u8", "a/b/r1/360p/index.m3u8", "a/b/r1/360p/seg_1.m4s", "a/bc/x"]
    for name in names:
        await origin.write(name, chunks(name.encode()))
    assert await origin.list("a/b") == names[:3]  # a/b, not a/bc
    assert await origin.list("a/b/") == names[:3]
    assert await origin.list("a/none") == []
    assert await origin.delete_prefix("a/b") == 3
    assert await origin.list("a/b") == []
    assert await origin.list("a") == ["a/bc/x"]
    assert await origin.delete_prefix("a/b") == 0  # idempotent
    with pytest.raises(NotWritable):
        await origin.list("../etc")
