"""`vod-stream package` and `vod-stream unpublish` on the S3 origin (VOD_ORIGIN=s3, the settings
the streaming pods get) against a real SeaweedFS, with the real ffmpeg: the source object is
fetched from the bucket, the ladder published under the file origin's keys with the master
last, older revisions pruned, the prefix removed by unpublish; a failing store fails the run
with the result the operator reads and leaves the published master playable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import m3u8
import pytest

from localcluster.s3server import S3Server
from tests.component.test_package import (
    SECONDS,
    make_source,
    package,
    package_command,
    stream_info,
)
from tests.component.test_s3_uploads import PREFIX, s3_env
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.component

ASSET = "assets/media/intro"
SOURCE = "uploads/pattern.mp4"


def put(s3: S3Server, bucket: str, key: str, body: bytes) -> None:
    resp = s3.request("PUT", f"/{bucket}/{key}", body=body)
    assert resp.status == 200, resp.body[:300]


def get(s3: S3Server, bucket: str, key: str) -> bytes:
    resp = s3.request("GET", f"/{bucket}/{key}")
    assert resp.status == 200, (key, resp.status)
    return resp.body


def asset_keys(s3: S3Server, bucket: str) -> list[str]:
    """The asset's object keys, relative to the asset prefix."""
    start = f"{PREFIX}{ASSET}/"
    return sorted(k[len(start) :] for k in s3.list_keys(bucket, start))


def mirror(s3: S3Server, bucket: str, target: Path) -> Path:
    """Download the asset's objects into `target` (to read them with m3u8 and ffprobe)."""
    for key in asset_keys(s3, bucket):
        path = target / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(get(s3, bucket, f"{PREFIX}{ASSET}/{key}"))
    return target


def referenced(folder: Path) -> set[str]:
    """Every file the master names, its variants name, and their init segments (relative)."""
    names = set()
    master = m3u8.M3U8((folder / "master.m3u8").read_text(), strict=True)
    for variant in master.playlists:
        names.add(variant.uri)
        base = variant.uri.rsplit("/", 1)[0]
        playlist = m3u8.M3U8((folder / variant.uri).read_text(), strict=True)
        names.update(f"{base}/{m.uri}" for m in playlist.segment_map)
        names.update(f"{base}/{s.uri}" for s in playlist.segments)
    return names


@pytest.fixture(scope="module")
def source_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("source") / "pattern.mp4"
    make_source(path)
    return path.read_bytes()


@pytest.fixture
def bucket(s3_server: S3Server, source_bytes: bytes) -> str:
    name = s3_server.make_bucket(f"pkg-{uuid.uuid4().hex[:12]}")
    put(s3_server, name, PREFIX + SOURCE, source_bytes)
    return name


@pytest.fixture(scope="module")
def packaged(
    s3_server: S3Server, source_bytes: bytes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    name = s3_server.make_bucket(f"pkg-{uuid.uuid4().hex[:12]}")
    put(s3_server, name, PREFIX + SOURCE, source_bytes)
    work = tmp_path_factory.mktemp("work")
    env = s3_env(s3_server, name, work / "creds")
    code, result, progress = package(work / "no-media", work, "--source-path", SOURCE, env=env)
    assert code == 0, result
    folder = mirror(s3_server, name, tmp_path_factory.mktemp("mirror"))
    return {"result": result, "progress": progress, "bucket": name, "dir": folder, "env": env}


def test_result_is_the_file_origins_result(packaged: dict[str, Any]) -> None:
    result = packaged["result"]
    assert result["result"] == "Succeeded"
    assert [r["name"] for r in result["renditions"]] == ["360p", "240p"]
    assert abs(result["media"]["duration"] - SECONDS) < 0.1
    assert result["playback"] == {
        "master": f"/{ASSET}/master.m3u8",
        "poster": f"/{ASSET}/0123456789ab/poster.jpg",
        "storyboard": f"/{ASSET}/0123456789ab/storyboard.vtt",
        "player": f"/play/{ASSET}/master.m3u8",
    }
    stages = [line["stage"] for line in packaged["progress"]]
    assert stages[0] == "downloading"  # the source object comes into scratch space first
    assert [line["progress"] for line in packaged["progress"]][-1] == 100


def test_every_object_is_published_under_the_file_origins_keys(
    packaged: dict[str, Any], s3_server: S3Server
) -> None:
    keys = set(asset_keys(s3_server, packaged["bucket"]))
    folder: Path = packaged["dir"]
    # as on the file origin: ffmpeg's own master stays in the revision folder, beside the extras
    extras = {
        f"0123456789ab/{n}"
        for n in ("master.m3u8", "poster.jpg", "storyboard.jpg", "storyboard.vtt")
    }
    assert keys == {"master.m3u8"} | referenced(folder) | extras
    assert all(k.startswith("0123456789ab/") for k in keys - {"master.m3u8"})
    assert not any("/." in k or k.startswith(".") for k in keys)  # no staging objects


def test_master_is_strict_hls_and_ffprobe_plays_the_ladder(packaged: dict[str, Any]) -> None:
    folder: Path = packaged["dir"]
    master = m3u8.M3U8((folder / "master.m3u8").read_text(), strict=True)
    assert [v.uri for v in master.playlists] == [
        "0123456789ab/360p/index.m3u8",
        "0123456789ab/240p/index.m3u8",
    ]
    assert all(v.stream_info.codecs and v.stream_info.bandwidth for v in master.playlists)
    info = stream_info(folder / "master.m3u8")
    videos = sorted(
        (s["width"], s["height"]) for s in info["streams"] if s["codec_type"] == "video"
    )
    assert videos == [(426, 240), (640, 360)]
    (poster,) = stream_info(folder / "0123456789ab" / "poster.jpg")["streams"]
    assert (poster["width"], poster["height"]) == (640, 360)


def test_repackaging_swaps_the_master_and_prunes_all_but_the_replaced_revision(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    short = tmp_path / "short.mp4"
    make_source(short, seconds=3)
    put(s3_server, bucket, PREFIX + SOURCE, short.read_bytes())
    for revision in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"):
        code, result, _ = package(
            tmp_path, tmp_path, "--source-path", SOURCE, revision=revision, env=env
        )
        assert code == 0, result
        master = get(s3_server, bucket, f"{PREFIX}{ASSET}/master.m3u8").decode()
        assert f"{revision}/360p/index.m3u8" in master
    keys = asset_keys(s3_server, bucket)
    assert {k.split("/", 1)[0] for k in keys} == {"bbbbbbbbbbbb", "cccccccccccc", "master.m3u8"}
    folder = mirror(s3_server, bucket, tmp_path / "mirror")
    assert referenced(folder) <= set(keys)  # the live master lists only objects that exist


def test_unpublish_deletes_every_object_under_the_prefix(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    short = tmp_path / "short.mp4"
    make_source(short, seconds=2)
    put(s3_server, bucket, PREFIX + SOURCE, short.read_bytes())
    code, result, _ = package(tmp_path, tmp_path, "--source-path", SOURCE, env=env)
    assert code == 0, result
    put(s3_server, bucket, f"{PREFIX}{ASSET}-other/keep.txt", b"a sibling prefix")
    assert len(asset_keys(s3_server, bucket)) > 5
    args = [sys.executable, "-m", "vod_stream", "unpublish", "--prefix", ASSET]
    environ = {**os.environ, **env}
    done = subprocess.run(args, capture_output=True, text=True, env=environ, check=False)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert (said["gone"], said["objects"] > 5) == (True, True)
    assert asset_keys(s3_server, bucket) == []
    assert s3_server.list_keys(bucket, f"{PREFIX}{ASSET}-other/") != []  # a/b is not a/bc
    assert s3_server.list_keys(bucket, PREFIX + SOURCE) == [PREFIX + SOURCE]
    again = subprocess.run(args, capture_output=True, text=True, env=environ, check=False)
    assert again.returncode == 0  # idempotent
    refused = subprocess.run(
        [*args[:-1], "../etc"], capture_output=True, text=True, env=environ, check=False
    )
    assert refused.returncode == 3


def test_bad_credentials_fail_with_the_stores_words(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    Path(env["VOD_S3_SECRET_ACCESS_KEY_FILE"]).write_text("not-the-secret\n")
    code, result, _ = package(tmp_path, tmp_path, "--source-path", SOURCE, env=env)
    assert (code, result["result"], result["permanent"]) == (1, "Failed", False)
    assert result["reason"] == "SourceDownloadFailed"
    assert "refused the credentials" in result["message"]
    assert asset_keys(s3_server, bucket) == []


def test_missing_source_object_fails_at_once(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    code, result, _ = package(tmp_path, tmp_path, "--source-path", "uploads/none.mp4", env=env)
    assert (code, result["reason"]) == (3, "SourceNotFound")


def test_store_gone_while_publishing_fails_and_keeps_the_live_master_whole(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """The store goes away after the source is fetched (while ffmpeg runs): the run fails with
    OriginWriteFailed, and the master published before still lists only existing objects."""
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    code, result, _ = package(
        tmp_path, tmp_path, "--source-path", SOURCE, revision="aaaaaaaaaaaa", env=env
    )
    assert code == 0, result
    before = asset_keys(s3_server, bucket)
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    with FaultProxy(port) as proxy:
        env = {**env, "VOD_S3_ENDPOINT": proxy.url, "VOD_ORIGIN_TIMEOUT_SECONDS": "2"}
        args, result_file = package_command(
            tmp_path, tmp_path, "--source-path", SOURCE, revision="bbbbbbbbbbbb"
        )
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
        )
        assert process.stdout is not None
        for line in process.stdout:
            if json.loads(line).get("stage") == "probing":  # the source is in scratch space
                proxy.refuse()
                break
        process.stdout.read()
        code = process.wait(timeout=120)
    result = json.loads(result_file.read_text())
    assert (code, result["result"], result["reason"]) == (1, "Failed", "OriginWriteFailed")
    assert result["permanent"] is False  # the Job may retry
    assert result["message"]
    assert asset_keys(s3_server, bucket) == before
    folder = mirror(s3_server, bucket, tmp_path / "mirror")
    assert "aaaaaaaaaaaa/360p/index.m3u8" in (folder / "master.m3u8").read_text()
    assert referenced(folder) <= set(before)


def test_an_upload_failing_half_way_writes_no_master_and_removes_what_it_put(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    from vod_stream.config import Settings
    from vod_stream.publish import ObjectStore, publish_revision
    from vod_stream.storage import S3Origin

    folder = tmp_path / "rev"
    (folder / "360p").mkdir(parents=True)
    for n in range(12):
        (folder / "360p" / f"seg_{n:02}.m4s").write_bytes(os.urandom(50_000))
    (folder / "360p" / "seg_99.m4s").symlink_to(folder / "gone")  # reading it fails
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    store = ObjectStore(S3Origin(Settings.from_env(env)))
    try:
        with pytest.raises(FileNotFoundError):
            publish_revision(store, ASSET, "dddddddddddd", folder, "#EXTM3U\n", None)
    finally:
        store.close()
    assert asset_keys(s3_server, bucket) == []  # no master, no orphaned segment
    (folder / "360p" / "seg_99.m4s").unlink()
    store = ObjectStore(S3Origin(Settings.from_env(env)))
    try:
        publish_revision(store, ASSET, "dddddddddddd", folder, "#EXTM3U\n", None)
    finally:
        store.close()
    keys = asset_keys(s3_server, bucket)
    assert len(keys) == 13
    assert keys[-1] == "master.m3u8"
