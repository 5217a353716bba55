"""`vod-stream package` with the real ffmpeg/ffprobe: a generated test pattern becomes an HLS
ladder that a strict playlist parser and ffprobe accept, with keyframes aligned across
renditions; bad input fails with the packager's reason and ffmpeg's words; URL sources come
from a loopback HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import m3u8
import pytest

pytestmark = pytest.mark.component

SECONDS = 7
SEGMENT = 4
RENDITIONS = ["720p:720:2800k:128k", "360p:360:800k:96k", "240p:240:400k:64k"]


def make_source(target: Path, seconds: int = SECONDS, size: str = "640x360") -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-c:a", "aac", "-shortest",
            str(target),
        ],
        check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("origin")
    make_source(root / "uploads" / "pattern.mp4")
    return root


def package_command(
    media: Path, work: Path, *source: str, revision: str, extra: tuple[str, ...] = ()
) -> tuple[list[str], Path]:
    """The packager's command line as the Job runs it, and its result file."""
    result_file = work / f"result-{revision}.json"
    args = [
        sys.executable, "-m", "vod_stream", "package", *source,
        "--media-root", str(media), "--prefix", "assets/media/intro", "--revision", revision,
        *(arg for r in RENDITIONS for arg in ("--rendition", r)),
        "--segment-seconds", str(SEGMENT), "--poster-at", "2", "--storyboard-interval", "2",
        "--work-dir", str(work / revision), "--result-file", str(result_file),
        "--report-seconds", "0.2", *extra,
    ]  # fmt: skip
    return args, result_file


def package(
    media: Path,
    work: Path,
    *source: str,
    revision: str = "0123456789ab",
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Run the packager as the Job does (`env`: VOD_* settings added to the environment, e.g.
    an S3 origin's); (exit code, result file, progress lines)."""
    args, result_file = package_command(media, work, *source, revision=revision, extra=extra)
    environ = {**os.environ, **(env or {})}
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, env=environ
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(result_file.read_text())
    assert lines[-1] == result  # the same result on stdout and in the termination message
    return done.returncode, result, [line for line in lines if line["vodPackage"] == "progress"]


def keyframe_times(playlist: Path) -> list[float]:
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0", "-skip_frame", "nokey",
            "-show_entries", "frame=pts_time", "-of", "json", str(playlist),
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [round(float(f["pts_time"]), 3) for f in json.loads(out)["frames"]]


def stream_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def packaged(media: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("work")
    code, result, progress = package(media, work, "--source-path", "uploads/pattern.mp4")
    assert code == 0, result
    return {"result": result, "progress": progress, "dir": media / "assets/media/intro"}


def test_result_names_the_ladder_media_and_playback(packaged: dict[str, Any]) -> None:
    result = packaged["result"]
    assert result["result"] == "Succeeded"
    assert [(r["name"], r["resolution"]) for r in result["renditions"]] == [
        ("360p", "640x360"),
        ("240p", "426x240"),
    ]
    assert result["skipped"] == ["720p"]  # taller than the 360-line source
    media = result["media"]
    assert (media["width"], media["height"], media["frameRate"]) == (640, 360, "30/1")
    assert media["codecs"] == ["h264", "aac"]
    assert abs(media["duration"] - SECONDS) < 0.1
    assert media["bytes"] > 0
    assert result["playback"] == {
        "master": "/assets/media/intro/master.m3u8",
        "poster": "/assets/media/intro/0123456789ab/poster.jpg",
        "storyboard": "/assets/media/intro/0123456789ab/storyboard.vtt",
        "player": "/play/assets/media/intro/master.m3u8",
    }


def test_progress_lines_rise_to_100_and_carry_the_probe(packaged: dict[str, Any]) -> None:
    progress = [line["progress"] for line in packaged["progress"]]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert any(0 < p < 100 for p in progress)
    assert all("media" in line for line in packaged["progress"] if line["stage"] != "probing")
    playable = [line["playable"] for line in packaged["progress"]]
    assert playable[0] is False
    assert playable[-1] is True


def test_master_playlist_is_strict_hls_with_bandwidth_resolution_codecs(
    packaged: dict[str, Any],
) -> None:
    folder: Path = packaged["dir"]
    master = m3u8.M3U8((folder / "master.m3u8").read_text(), strict=True)
    assert master.is_variant
    variants = [
        (v.uri, v.stream_info.resolution, v.stream_info.codecs, v.stream_info.bandwidth)
        for v in master.playlists
    ]
    assert [(uri, res) for uri, res, _, _ in variants] == [
        ("0123456789ab/360p/index.m3u8", (640, 360)),
        ("0123456789ab/240p/index.m3u8", (426, 240)),
    ]
    for _, _, codecs, bandwidth in variants:
        video, audio = codecs.split(",")
        assert video.startswith("avc1.64")  # H.264 High
        assert audio == "mp4a.40.2"  # AAC-LC
        assert bandwidth > 0
    assert variants[0][3] > variants[1][3]


def test_variant_playlists_are_vod_fmp4_with_bounded_segments(packaged: dict[str, Any]) -> None:
    folder: Path = packaged["dir"] / "0123456789ab"
    for name in ("360p", "240p"):
        playlist = m3u8.M3U8((folder / name / "index.m3u8").read_text(), strict=True)
        assert playlist.playlist_type == "vod"
        assert playlist.is_endlist
        assert playlist.is_independent_segments
        assert playlist.target_duration == SEGMENT
        (init,) = playlist.segment_map
        assert (folder / name / init.uri).is_file()
        durations = [s.duration for s in playlist.segments]
        assert all(abs(d - SEGMENT) < 0.01 for d in durations[:-1])
        assert 0 < durations[-1] <= SEGMENT
        assert abs(sum(durations) - SECONDS) < 0.1
        for segment in playlist.segments:
            assert segment.uri.endswith(".m4s")
            assert (folder / name / segment.uri).stat().st_size > 0


def test_keyframes_are_aligned_across_renditions(packaged: dict[str, Any]) -> None:
    folder: Path = packaged["dir"] / "0123456789ab"
    times = {name: keyframe_times(folder / name / "index.m3u8") for name in ("360p", "240p")}
    assert times["360p"] == times["240p"]
    start = times["360p"][0]
    # Every 2 s (the source has one keyframe in 250 frames), after the same start offset.
    assert [round(t - start, 3) for t in times["360p"]] == [0.0, 2.0, 4.0, 6.0]


def test_ffprobe_reads_the_ladder_through_the_master(packaged: dict[str, Any]) -> None:
    info = stream_info(packaged["dir"] / "master.m3u8")
    videos = sorted(
        (s["width"], s["height"]) for s in info["streams"] if s["codec_type"] == "video"
    )
    assert videos == [(426, 240), (640, 360)]
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    assert abs(float(info["format"]["duration"]) - SECONDS) < 0.2


def test_poster_and_storyboard(packaged: dict[str, Any]) -> None:
    folder: Path = packaged["dir"] / "0123456789ab"
    (poster,) = stream_info(folder / "poster.jpg")["streams"]
    assert (poster["codec_name"], poster["width"], poster["height"]) == ("mjpeg", 640, 360)
    (sprite,) = stream_info(folder / "storyboard.jpg")["streams"]
    assert (sprite["width"], sprite["height"]) == (4 * 160, 90)  # 4 thumbnails for 7 s
    vtt = (folder / "storyboard.vtt").read_text()
    assert vtt.startswith("WEBVTT")
    assert "00:00:06.000 --> 00:00:07.000\nstoryboard.jpg#xywh=480,0,160,90" in vtt


def test_nothing_half_done_is_left_visible(packaged: dict[str, Any]) -> None:
    folder: Path = packaged["dir"]
    assert sorted(p.name for p in folder.iterdir()) == ["0123456789ab", "master.m3u8"]
    assert list(folder.rglob(".*")) == []


def test_repackaging_swaps_the_master_last_and_keeps_one_previous_revision(
    media: Path, tmp_path: Path
) -> None:
    root = tmp_path / "origin"
    make_source(root / "uploads" / "pattern.mp4", seconds=3)
    folder = root / "assets/media/intro"
    for revision in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"):
        code, result, _ = package(
            root, tmp_path, "--source-path", "uploads/pattern.mp4", revision=revision
        )
        assert code == 0, result
        master = (folder / "master.m3u8").read_text()
        assert f"{revision}/360p/index.m3u8" in master
    assert sorted(p.name for p in folder.iterdir()) == [
        "bbbbbbbbbbbb",  # the one the last master replaced: players may still be on it
        "cccccccccccc",
        "master.m3u8",
    ]


def test_not_a_video_fails_at_once_with_ffprobes_words(media: Path, tmp_path: Path) -> None:
    (media / "uploads" / "notes.mp4").write_bytes(os.urandom(64 * 1024))
    code, result, _ = package(
        media, tmp_path, "--source-path", "uploads/notes.mp4", revision="dddddddddddd"
    )
    assert code == 3  # the Job's podFailurePolicy fails the Job without retries
    assert (result["result"], result["reason"]) == ("Failed", "SourceNotVideo")
    assert "Invalid data found when processing input" in result["message"]
    assert not (media / "assets/media/intro/.staging-dddddddddddd").exists()


def test_truncated_video_fails_with_ffprobes_reason(media: Path, tmp_path: Path) -> None:
    whole = (media / "uploads" / "pattern.mp4").read_bytes()
    (media / "uploads" / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    code, result, _ = package(
        media, tmp_path, "--source-path", "uploads/cut.mp4", revision="eeeeeeeeeeee"
    )
    assert code == 3
    assert result["reason"] == "SourceNotVideo"
    assert "moov atom not found" in result["message"]  # the index was in the lost half


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.mp4", "SourceOutsideOrigin"),
        ("uploads/escape.mp4", "SourceOutsideOrigin"),
        ("uploads/missing.mp4", "SourceNotFound"),
    ],
    ids=["dot-dot", "symlink-out", "missing"],
)
def test_paths_outside_the_origin_are_refused(
    media: Path, tmp_path: Path, path: str, reason: str
) -> None:
    outside = media.parent / "outside.mp4"
    outside.write_bytes((media / "uploads" / "pattern.mp4").read_bytes())
    escape = media / "uploads" / "escape.mp4"
    if not escape.is_symlink():
        escape.symlink_to(outside)
    code, result, _ = package(media, tmp_path, "--source-path", path, revision="ffffffffffff")
    assert (code, result["reason"]) == (3, reason)
    assert path in result["message"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    token = "Bearer s3cret"

    def do_GET(self) -> None:
        if self.path.startswith("/private/") and self.headers.get("Authorization") != self.token:
            self.send_error(401, "Unauthorized")
            return
        self.path = self.path.removeprefix("/private")
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_origin(media: Path) -> Iterator[str]:
    def handler(*args: Any, **kwargs: Any) -> _Handler:
        return _Handler(*args, directory=str(media / "uploads"), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_source_with_headers_from_a_secret_folder(http_origin: str, tmp_path: Path) -> None:
    root = tmp_path / "origin"
    root.mkdir()
    headers = tmp_path / "headers"
    headers.mkdir()
    (headers / "Authorization").write_text("Bearer s3cret\n")
    (headers / "..data").mkdir()  # what a Secret volume also holds: ignored
    code, result, progress = package(
        root, tmp_path, "--source-url", f"{http_origin}/private/pattern.mp4",
        "--headers-dir", str(headers), revision="abababababab",
    )  # fmt: skip
    assert code == 0, result
    assert result["media"]["width"] == 640
    assert "downloading" in {line["stage"] for line in progress}
    assert (root / "assets/media/intro/master.m3u8").is_file()


@pytest.mark.parametrize(
    ("url", "answer"),
    [("/missing.mp4", "404"), ("/private/pattern.mp4", "401")],
    ids=["404", "no-credentials"],
)
def test_url_source_http_errors_fail_at_once(
    http_origin: str, tmp_path: Path, url: str, answer: str
) -> None:
    code, result, _ = package(tmp_path, tmp_path, "--source-url", http_origin + url)
    assert (code, result["reason"]) == (3, "SourceDownloadFailed")
    assert f"answered {answer}" in result["message"]


def test_unreachable_url_may_be_retried(tmp_path: Path) -> None:
    with socket_closed() as port:
        code, result, _ = package(tmp_path, tmp_path, "--source-url", f"http://127.0.0.1:{port}/a")
    assert (code, result["reason"], result["permanent"]) == (1, "SourceDownloadFailed", False)


def test_unpublish_removes_the_prefix(tmp_path: Path) -> None:
    folder = tmp_path / "assets/media/intro/0123456789ab"
    folder.mkdir(parents=True)
    (folder / "x.m4s").write_bytes(b"x")
    args = [sys.executable, "-m", "vod_stream", "unpublish", "--media-root", str(tmp_path)]
    done = subprocess.run(
        [*args, "--prefix", "assets/media/intro"], capture_output=True, check=False
    )
    assert done.returncode == 0
    assert not (tmp_path / "assets/media/intro").exists()
    assert (tmp_path / "assets/media").is_dir()
    refused = subprocess.run([*args, "--prefix", "../etc"], capture_output=True, check=False)
    assert refused.returncode == 3


class socket_closed:
    """A loopback port that nothing listens on."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        self._sock.close()
        return port

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_video_shorter_than_one_storyboard_interval_gets_one_thumbnail(tmp_path: Path) -> None:
    root = tmp_path / "origin"
    make_source(root / "uploads" / "short.mp4", seconds=3)
    code, result, _ = package(
        root, tmp_path, "--source-path", "uploads/short.mp4",
        revision="0a0a0a0a0a0a", extra=("--storyboard-interval", "10"),
    )  # fmt: skip
    assert code == 0, result
    folder = root / "assets/media/intro/0a0a0a0a0a0a"
    (sprite,) = stream_info(folder / "storyboard.jpg")["streams"]
    assert (sprite["width"], sprite["height"]) == (160, 90)
    assert "00:00:00.000 --> 00:00:03.000" in (folder / "storyboard.vtt").read_text()


@pytest.mark.parametrize(
    ("sent", "words"),
    [
        (b"", "no answer within 0.5 s"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100,
         "the body stalled for 0.5 s after 100 bytes"),
    ],
    ids=["no-head", "stalled-body"],
)  # fmt: skip
def test_a_silent_origin_times_out_saying_where(tmp_path: Path, sent: bytes, words: str) -> None:
    from vod_stream.package import PackageFailure, download

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_then_stall() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(sent)
                conn.recv(4096)  # until the client gives up and closes

        thread = threading.Thread(target=answer_then_stall, daemon=True)
        thread.start()
        with pytest.raises(PackageFailure) as caught:
            download(f"http://127.0.0.1:{port}/a.mp4", tmp_path / "a.mp4", {}, lambda _: None, 0.5)
        thread.join(timeout=5)
    assert (caught.value.reason, caught.value.permanent) == ("SourceDownloadFailed", False)
    assert words in caught.value.message
