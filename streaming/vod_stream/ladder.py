"""Pure planning of a VideoAsset's outputs: which renditions, at what size and bitrate, with
which keyframe interval, and the exact ffmpeg/ffprobe command lines that produce them.

No I/O: `vod_stream.package` runs what these functions return. One ffmpeg run decodes the
source once and encodes every rung from it (`split` + `scale`), with the same fixed GOP on every
rung (`-g`/`-keyint_min` = keyframe interval, `-sc_threshold 0`), so keyframes and therefore
segment boundaries line up across renditions and players switch without stalls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

#: x264 preset when none is asked for (fast enough for a 2-core node, decent quality).
DEFAULT_PRESET = "veryfast"
#: Keyframe interval in seconds: every segment boundary is a keyframe on every rung.
KEYFRAME_SECONDS = 2
#: Peak bitrate allowed above the target (VBV maxrate), and the VBV buffer, as factors.
MAXRATE_FACTOR = 1.1
BUFSIZE_FACTOR = 2.0
#: Storyboard thumbnails: width in pixels, columns of the sprite, most thumbnails per sprite.
THUMB_WIDTH = 160
SPRITE_COLUMNS = 10
MAX_THUMBNAILS = 900
#: Poster height cap (the poster is a still; 1080 lines are plenty).
POSTER_MAX_HEIGHT = 1080

_RENDITION = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9-]{0,15}):(?P<height>[0-9]+):(?P<video>[0-9]+)k(?::(?P<audio>[0-9]+)k)?$"
)


class PlanError(ValueError):
    """The request cannot be planned (bad rendition syntax, a source with no video)."""


@dataclass(frozen=True)
class Rendition:
    """One requested rung: name, output height, target video and audio bitrates (kbit/s)."""

    name: str
    height: int
    video_kbps: int
    audio_kbps: int = 128

    @classmethod
    def parse(cls, text: str) -> Rendition:
        """`NAME:HEIGHT:VIDEOk[:AUDIOk]`, e.g. `720p:720:3000k:128k` (the Job's arguments)."""
        match = _RENDITION.match(text)
        if match is None:
            raise PlanError(f"rendition {text!r} is not NAME:HEIGHT:VIDEOk[:AUDIOk]")
        audio = match.group("audio")
        return cls(
            name=match.group("name"),
            height=int(match.group("height")),
            video_kbps=int(match.group("video")),
            audio_kbps=int(audio) if audio else 128,
        )

    def argument(self) -> str:
        return f"{self.name}:{self.height}:{self.video_kbps}k:{self.audio_kbps}k"


@dataclass(frozen=True)
class Source:
    """What ffprobe says about the source (see `vod_stream.probe`)."""

    duration: float
    width: int
    height: int
    frame_rate: Fraction
    video_codec: str
    audio_codec: str | None = None
    bitrate: int = 0
    size: int = 0
    sample_aspect: Fraction = Fraction(1)

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def display_aspect(self) -> Fraction:
        return Fraction(self.width, self.height) * self.sample_aspect


@dataclass(frozen=True)
class Rung:
    """One planned rendition: exact output size and rate control."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int

    @property
    def maxrate_kbps(self) -> int:
        return round(self.video_kbps * MAXRATE_FACTOR)

    @property
    def bufsize_kbps(self) -> int:
        return round(self.video_kbps * BUFSIZE_FACTOR)

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Ladder:
    """The whole plan: rungs (highest first), GOP and segment length, audio or not."""

    rungs: tuple[Rung, ...]
    gop_frames: int
    segment_seconds: int
    has_audio: bool
    #: Requested renditions left out because they are taller than the source.
    skipped: tuple[str, ...] = ()


def even(value: float | Fraction) -> int:
    """The nearest even integer >= 2 (H.264 4:2:0 needs even dimensions)."""
    return max(2, 2 * round(value / 2))


def width_for(height: int, aspect: Fraction) -> int:
    return even(height * aspect)


def plan(
    source: Source,
    requested: Sequence[Rendition],
    segment_seconds: int = 4,
    keyframe_seconds: int = KEYFRAME_SECONDS,
) -> Ladder:
    """Plan the ladder for `source`.

    Renditions taller than the source are skipped (upscaling wastes bits); when every one of
    them is taller, the lowest is kept at the source's own height, so a small source still
    gets one rendition. Rungs are ordered highest first, as the master playlist lists them.
    The GOP is `keyframe_seconds` of frames; the segment length must be a multiple of it.
    """
    if not requested:
        raise PlanError("no rendition requested")
    if source.width <= 0 or source.height <= 0:
        raise PlanError("the source has no video stream with a size")
    if segment_seconds % keyframe_seconds:
        raise PlanError(
            f"segment length {segment_seconds}s is not a multiple of the "
            f"{keyframe_seconds}s keyframe interval"
        )
    names = [r.name for r in requested]
    if len(set(names)) != len(names):
        raise PlanError(f"rendition names must be unique: {names}")
    ordered = sorted(requested, key=lambda r: r.height, reverse=True)
    fitting = [r for r in ordered if r.height <= source.height]
    skipped = tuple(r.name for r in ordered if r.height > source.height)
    if not fitting:
        lowest = ordered[-1]
        fitting = [
            Rendition(lowest.name, even(source.height), lowest.video_kbps, lowest.audio_kbps)
        ]
        skipped = tuple(name for name in skipped if name != lowest.name)
    aspect = source.display_aspect
    rungs = tuple(
        Rung(r.name, width_for(r.height, aspect), even(r.height), r.video_kbps, r.audio_kbps)
        for r in fitting
    )
    fps = source.frame_rate if source.frame_rate > 0 else Fraction(25)
    gop = max(1, round(fps * keyframe_seconds))
    return Ladder(rungs, gop, segment_seconds, source.has_audio, skipped)


def ladder_command(
    ladder: Ladder, source: str, out_dir: str, preset: str = DEFAULT_PRESET
) -> list[str]:
    """ffmpeg arguments producing the whole ladder as HLS fMP4 (CMAF) in `out_dir`.

    Layout: `out_dir/master.m3u8`, `out_dir/NAME/index.m3u8`, `out_dir/NAME/init_I.mp4`,
    `out_dir/NAME/seg_00000.m4s`... Progress goes to stdout (`-progress pipe:1`).
    """
    count = len(ladder.rungs)
    labels = "".join(f"[s{i}]" for i in range(count))
    graph = [f"[0:v:0]split={count}{labels}" if count > 1 else "[0:v:0]null[s0]"]
    graph += [
        f"[s{i}]scale={rung.width}:{rung.height}:flags=bicubic,setsar=1[v{i}]"
        for i, rung in enumerate(ladder.rungs)
    ]
    args = [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
        "-progress", "pipe:1", "-nostats",
        "-i", source,
        "-filter_complex", ";".join(graph),
    ]  # fmt: skip
    for i in range(count):
        args += ["-map", f"[v{i}]"]
        if ladder.has_audio:
            args += ["-map", "0:a:0"]
    args += [
        "-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-g", str(ladder.gop_frames), "-keyint_min", str(ladder.gop_frames),
        "-sc_threshold", "0",
    ]  # fmt: skip
    for i, rung in enumerate(ladder.rungs):
        args += [
            f"-b:v:{i}", f"{rung.video_kbps}k",
            f"-maxrate:v:{i}", f"{rung.maxrate_kbps}k",
            f"-bufsize:v:{i}", f"{rung.bufsize_kbps}k",
        ]  # fmt: skip
    if ladder.has_audio:
        args += ["-c:a", "aac", "-ac", "2", "-ar", "48000"]
        for i, rung in enumerate(ladder.rungs):
            args += [f"-b:a:{i}", f"{rung.audio_kbps}k"]
    stream_map = " ".join(
        f"v:{i},a:{i},name:{rung.name}" if ladder.has_audio else f"v:{i},name:{rung.name}"
        for i, rung in enumerate(ladder.rungs)
    )
    args += [
        "-f", "hls",
        "-hls_time", str(ladder.segment_seconds),
        "-hls_playlist_type", "vod",
        "-hls_flags", "independent_segments",
        "-hls_segment_type", "fmp4",
        "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", f"{out_dir}/%v/seg_%05d.m4s",
        "-master_pl_name", "master.m3u8",
        "-var_stream_map", stream_map,
        f"{out_dir}/%v/index.m3u8",
    ]  # fmt: skip
    return args


def probe_command(source: str) -> list[str]:
    return [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", source,
    ]  # fmt: skip


def poster_time(at: float, duration: float) -> float:
    """The poster's offset: `at` when it lies inside the video, else the middle."""
    if 0 <= at < duration:
        return at
    return max(0.0, duration / 2)


def poster_command(source: str, at: float, target: str, ladder: Ladder) -> list[str]:
    """One JPEG still at `at` seconds, as large as the top rung (at most 1080 lines)."""
    top = ladder.rungs[0]
    height = min(top.height, POSTER_MAX_HEIGHT)
    width = even(top.width * height / top.height)
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
        "-ss", f"{at:.3f}", "-i", source,
        "-frames:v", "1", "-vf", f"scale={width}:{height},setsar=1",
        "-q:v", "3", "-f", "image2", target,
    ]  # fmt: skip


@dataclass(frozen=True)
class Storyboard:
    """A sprite of thumbnails every `interval` seconds, laid out in `columns` x `rows`."""

    interval: float
    count: int
    columns: int
    rows: int
    width: int
    height: int


def plan_storyboard(source: Source, interval: float) -> Storyboard:
    """Thumbnails at 0, interval, 2*interval, ... (the interval widens past MAX_THUMBNAILS).

    The interval is at least the keyframe interval: thumbnails come from keyframes."""
    interval = max(interval, source.duration / MAX_THUMBNAILS, KEYFRAME_SECONDS)
    count = max(1, math.ceil(source.duration / interval - 1e-6))
    columns = min(count, SPRITE_COLUMNS)
    rows = math.ceil(count / columns)
    height = even(THUMB_WIDTH / source.display_aspect)
    return Storyboard(interval, count, columns, rows, THUMB_WIDTH, height)


def storyboard_command(rendition_playlist: str, board: Storyboard, target: str) -> list[str]:
    """One sprite JPEG, read from the lowest rendition just packaged (small frames, a keyframe
    every KEYFRAME_SECONDS): only keyframes are decoded, the fps filter picks the times. The
    last frame is cloned for a whole grid's worth of time first, so the fps filter emits every
    slot up to the end (it emits nothing past its last input) and the grid fills and is
    written even for a video shorter than one interval."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
        "-skip_frame", "nokey", "-i", rendition_playlist,
        "-vf",
        f"tpad=stop_mode=clone:stop_duration={board.interval * board.rows * board.columns:g},"
        f"fps=1/{board.interval:g}:round=down,"
        f"scale={board.width}:{board.height},setsar=1,tile={board.columns}x{board.rows}",
        "-frames:v", "1", "-q:v", "5", "-f", "image2", target,
    ]  # fmt: skip


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def storyboard_vtt(board: Storyboard, duration: float, sprite: str) -> str:
    """WebVTT whose cues point at regions of the sprite (`sprite#xywh=x,y,w,h`)."""
    lines = ["WEBVTT", ""]
    for index in range(board.count):
        start = index * board.interval
        end = min(duration, start + board.interval)
        x = (index % board.columns) * board.width
        y = (index // board.columns) * board.height
        lines += [
            f"{_timestamp(start)} --> {_timestamp(end)}",
            f"{sprite}#xywh={x},{y},{board.width},{board.height}",
            "",
        ]
    return "\n".join(lines)


def published_master(master: str, revision: str) -> str:
    """ffmpeg's master playlist, moved one folder up: every URI gains `revision/`."""
    out = []
    for line in master.splitlines():
        if line and not line.startswith("#"):
            line = f"{revision}/{line}"
        elif 'URI="' in line:
            line = line.replace('URI="', f'URI="{revision}/')
        out.append(line)
    return "\n".join(out) + "\n"


def master_codecs(master: str) -> list[str]:
    """The CODECS of every variant in a master playlist, in order (empty string if absent)."""
    found = []
    for line in master.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            match = re.search(r'CODECS="([^"]*)"', line)
            found.append(match.group(1) if match else "")
    return found


@dataclass(frozen=True)
class Weights:
    """Share of the whole job each stage takes, for one overall percentage."""

    download: float
    transcode: float
    extras: float

    @classmethod
    def of(cls, downloading: bool, extras: bool) -> Weights:
        download = 0.1 if downloading else 0.0
        extra = 0.05 if extras else 0.0
        return cls(download, 1.0 - download - extra, extra)


def percent(weights: Weights, stage: str, fraction: float) -> int:
    """Overall progress (0-100) for `fraction` (0-1) done of `stage`."""
    fraction = min(1.0, max(0.0, fraction))
    before = {
        "probing": weights.download,
        "downloading": 0.0,
        "transcoding": weights.download,
        "extras": weights.download + weights.transcode,
        "done": 1.0,
    }[stage]
    share = {"downloading": weights.download, "transcoding": weights.transcode}.get(
        stage, weights.extras if stage == "extras" else 0.0
    )
    return min(100, math.floor((before + share * fraction) * 100))
