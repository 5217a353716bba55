"""Ladder planning for `vod-stream package`: which renditions, their sizes and bitrates, the
GOP, and the ffmpeg command lines, all pure."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from vod_stream import ladder, probe
from vod_stream.ladder import Rendition, Source

pytestmark = pytest.mark.unit

DEFAULT = [
    Rendition("1080p", 1080, 5000),
    Rendition("720p", 720, 2800),
    Rendition("480p", 480, 1400),
    Rendition("360p", 360, 800, 96),
]


def source(width: int = 1920, height: int = 1080, fps: Fraction = Fraction(30), audio: bool = True):
    return Source(60.0, width, height, fps, "h264", "aac" if audio else None, 6_000_000, 45_000_000)


def test_full_hd_source_gets_every_rung_highest_first() -> None:
    plan = ladder.plan(source(), DEFAULT)
    assert [(r.name, r.resolution) for r in plan.rungs] == [
        ("1080p", "1920x1080"),
        ("720p", "1280x720"),
        ("480p", "854x480"),
        ("360p", "640x360"),
    ]
    assert plan.skipped == ()
    assert plan.rungs[-1].audio_kbps == 96


def test_renditions_taller_than_the_source_are_skipped() -> None:
    plan = ladder.plan(source(1280, 720), DEFAULT)
    assert [r.name for r in plan.rungs] == ["720p", "480p", "360p"]
    assert plan.skipped == ("1080p",)


def test_a_source_below_every_rung_keeps_the_lowest_at_its_own_height() -> None:
    plan = ladder.plan(source(320, 180), DEFAULT)
    assert [(r.name, r.width, r.height, r.video_kbps) for r in plan.rungs] == [
        ("360p", 320, 180, 800)
    ]
    assert plan.skipped == ("1080p", "720p", "480p")


def test_widths_follow_the_display_aspect_and_are_even() -> None:
    portrait = ladder.plan(source(1080, 1920), [Rendition("720p", 720, 2800)])
    assert portrait.rungs[0].resolution == "404x720"  # 405 rounds to even
    anamorphic = Source(10, 720, 576, Fraction(25), "mpeg2video", sample_aspect=Fraction(16, 15))
    (rung,) = ladder.plan(anamorphic, [Rendition("576p", 576, 1500)]).rungs
    assert (rung.width, rung.height) == (768, 576)
    assert all(r.width % 2 == 0 for r in ladder.plan(source(1366, 768), DEFAULT).rungs)


@pytest.mark.parametrize(
    ("fps", "gop"),
    [(Fraction(30), 60), (Fraction(30000, 1001), 60), (Fraction(25), 50), (Fraction(60), 120)],
)
def test_gop_is_two_seconds_of_frames(fps: Fraction, gop: int) -> None:
    assert ladder.plan(source(fps=fps), DEFAULT).gop_frames == gop


def test_segment_length_must_be_a_multiple_of_the_keyframe_interval() -> None:
    with pytest.raises(ladder.PlanError, match="multiple"):
        ladder.plan(source(), DEFAULT, segment_seconds=5)


def test_rate_control_caps_peaks() -> None:
    rung = ladder.plan(source(), [Rendition("720p", 720, 3000)]).rungs[0]
    assert (rung.maxrate_kbps, rung.bufsize_kbps) == (3300, 6000)


def test_rendition_arguments_round_trip_and_bad_ones_are_refused() -> None:
    for rendition in DEFAULT:
        assert Rendition.parse(rendition.argument()) == rendition
    assert Rendition.parse("720p:720:2800k") == Rendition("720p", 720, 2800, 128)
    with pytest.raises(ladder.PlanError):
        Rendition.parse("720p:720:2800")


def _after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_ladder_command_one_decode_aligned_gops_fmp4_and_a_master() -> None:
    plan = ladder.plan(source(1280, 720), DEFAULT)
    args = ladder.ladder_command(plan, "/in.mp4", "/out", "veryfast")
    assert args.count("-i") == 1
    graph = _after(args, "-filter_complex")
    assert graph.startswith("[0:v:0]split=3[s0][s1][s2];")
    assert "[s2]scale=640:360:flags=bicubic,setsar=1[v2]" in graph
    assert (_after(args, "-g"), _after(args, "-keyint_min"), _after(args, "-sc_threshold")) == (
        "60",
        "60",
        "0",
    )
    assert _after(args, "-b:v:0") == "2800k"
    assert _after(args, "-b:a:2") == "96k"
    assert _after(args, "-hls_segment_type") == "fmp4"
    assert _after(args, "-master_pl_name") == "master.m3u8"
    assert _after(args, "-var_stream_map") == (
        "v:0,a:0,name:720p v:1,a:1,name:480p v:2,a:2,name:360p"
    )
    assert args[-1] == "/out/%v/index.m3u8"


def test_ladder_command_without_audio_maps_video_only() -> None:
    plan = ladder.plan(source(audio=False), [Rendition("720p", 720, 2800)])
    args = ladder.ladder_command(plan, "/in.mp4", "/out")
    assert "0:a:0" not in args
    assert "-c:a" not in args
    assert _after(args, "-var_stream_map") == "v:0,name:720p"
    assert _after(args, "-filter_complex").startswith("[0:v:0]null[s0]")


def test_published_master_points_into_the_revision_folder() -> None:
    master = (
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=3220800,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p/index.m3u8\n\n"
    )
    out = ladder.published_master(master, "0123abcd")
    assert "0123abcd/720p/index.m3u8" in out.splitlines()
    assert ladder.master_codecs(out) == ["avc1.64001f,mp4a.40.2"]
    assert ladder.master_codecs("#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8\n") == [""]


def test_poster_time_stays_inside_the_video() -> None:
    assert ladder.poster_time(3, 60) == 3
    assert ladder.poster_time(90, 60) == 30
    assert ladder.poster_time(5, 4) == 2


def test_storyboard_grid_and_cues() -> None:
    board = ladder.plan_storyboard(source(), 10)
    assert (board.count, board.columns, board.rows, board.width, board.height) == (
        6,
        6,
        1,
        160,
        90,
    )
    vtt = ladder.storyboard_vtt(board, 60.0, "storyboard.jpg")
    assert vtt.startswith("WEBVTT\n")
    assert "00:00:50.000 --> 00:01:00.000\nstoryboard.jpg#xywh=800,0,160,90" in vtt
    long = ladder.plan_storyboard(Source(36000, 1920, 1080, Fraction(25), "h264"), 2)
    assert long.count <= ladder.MAX_THUMBNAILS
    assert (long.columns, long.rows) == (10, 90)
    assert ladder.plan_storyboard(source(), 1).interval == ladder.KEYFRAME_SECONDS


def test_progress_percent_by_stage() -> None:
    weights = ladder.Weights.of(downloading=True, extras=True)
    assert ladder.percent(weights, "downloading", 0.5) == 5
    assert ladder.percent(weights, "transcoding", 0.0) == 10
    assert ladder.percent(weights, "transcoding", 0.5) == 52
    assert ladder.percent(weights, "extras", 0.0) == 95
    assert ladder.percent(weights, "done", 1.0) == 100
    local = ladder.Weights.of(downloading=False, extras=False)
    assert ladder.percent(local, "transcoding", 0.42) == 42


def test_probe_report_parsing() -> None:
    report: dict[str, Any] = {
        "streams": [
            {"codec_type": "video", "codec_name": "mjpeg", "disposition": {"attached_pic": 1}},
            {
                "codec_type": "video",
                "codec_name": "h264",
                "width": 1920,
                "height": 1080,
                "avg_frame_rate": "30000/1001",
                "sample_aspect_ratio": "1:1",
            },
            {"codec_type": "audio", "codec_name": "aac"},
        ],
        "format": {"duration": "12.5", "bit_rate": "4000000", "size": "6250000"},
    }
    found = probe.parse(report)
    assert (found.width, found.height, found.video_codec, found.audio_codec) == (
        1920,
        1080,
        "h264",
        "aac",
    )
    assert found.frame_rate == Fraction(30000, 1001)
    assert (found.duration, found.bitrate, found.size) == (12.5, 4000000, 6250000)
    with pytest.raises(probe.ProbeError, match="no video stream"):
        probe.parse({"streams": [{"codec_type": "audio"}], "format": {"duration": "3"}})
    with pytest.raises(probe.ProbeError, match="no duration"):
        probe.parse({"streams": report["streams"][1:2], "format": {}})
