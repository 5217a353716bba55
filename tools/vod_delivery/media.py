"""A few seconds of test-pattern video for the demo (H.264/AAC MP4, moov atom first)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def ffmpeg_args(out: Path, seconds: int = 5, height: int = 360) -> list[str]:
    """The ffmpeg command line for a test pattern with a 1 kHz tone, streamable (faststart)."""
    width = height * 16 // 9
    return [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate=25:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=1000:sample_rate=48000:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-shortest",
        "-movflags",
        "+faststart",
        str(out),
    ]


def make_test_video(out: Path, seconds: int = 5) -> Path:
    """Write the test video to `out` (an existing file is kept: the demo is idempotent)."""
    if out.exists() and out.stat().st_size > 0:
        return out
    if shutil.which("ffmpeg") is None:
        raise RuntimeError(
            "ffmpeg is not installed: run `make install` (tools/install-system-deps.sh)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".part.mp4")
    subprocess.run(ffmpeg_args(partial, seconds), check=True, timeout=120)
    partial.replace(out)
    return out
