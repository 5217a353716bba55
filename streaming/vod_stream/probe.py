"""ffprobe's JSON -> `ladder.Source` (pure), and `ffprobe` itself (the one I/O function)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from vod_stream.ladder import Source, probe_command


class ProbeError(ValueError):
    """The file is not a video ffprobe can read; the message says why, in ffprobe's words."""


def _fraction(text: Any) -> Fraction:
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return value if value > 0 else Fraction(0)


def _number(text: Any, default: float = 0.0) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def parse(report: Mapping[str, Any]) -> Source:
    """The `Source` of one `ffprobe -show_format -show_streams` report."""
    streams = report.get("streams") or []
    fmt = report.get("format") or {}
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    if video is None:
        found = ", ".join(sorted({str(s.get("codec_type")) for s in streams})) or "no streams"
        raise ProbeError(f"no video stream in the source ({found})")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _number(fmt.get("duration"), _number(video.get("duration")))
    if duration <= 0:
        raise ProbeError("the source has no duration (a still image or a live stream?)")
    rate = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate"))
    sar = _fraction(video.get("sample_aspect_ratio", "1:1").replace(":", "/")) or Fraction(1)
    return Source(
        duration=duration,
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        frame_rate=rate,
        video_codec=str(video.get("codec_name", "")),
        audio_codec=str(audio["codec_name"]) if audio and audio.get("codec_name") else None,
        bitrate=int(_number(fmt.get("bit_rate"))),
        size=int(_number(fmt.get("size"))),
        sample_aspect=sar,
    )


def probe(source: str, timeout: float = 120.0) -> Source:
    """Run ffprobe on a local file (or URL) and parse its report."""
    result = subprocess.run(
        probe_command(source), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise ProbeError("; ".join(lines[-3:]) if lines else f"ffprobe exit {result.returncode}")
    try:
        report = json.loads(result.stdout or "{}")
    except ValueError as exc:
        raise ProbeError(f"ffprobe printed no JSON: {exc}") from exc
    return parse(report)
