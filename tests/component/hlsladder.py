"""A real HLS ladder for the playback tests: an ffmpeg test pattern packaged by the real
`vod-stream package` (fMP4 renditions, 2 s GOPs and segments, poster, storyboard), and signing
keys the served vod-stream and the tests share."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PREFIX = "assets/media/intro"
REVISION = "0a1b2c3d4e5f"
SECONDS = 12
RENDITIONS = ("360p:360:900k:96k", "270p:270:500k:64k", "180p:180:250k:48k")
KEYS = {"k1": b"playback-key-one", "k2": b"playback-key-two"}


@dataclass(frozen=True)
class Ladder:
    root: Path  # the media root
    prefix: str  # "/assets/media/intro/"
    result: dict[str, object]  # the packager's result

    @property
    def master(self) -> str:
        return f"{self.prefix}master.m3u8"

    def variant(self, name: str) -> str:
        return f"{self.prefix}{REVISION}/{name}/index.m3u8"

    def first_segment(self, name: str) -> str:
        folder = self.root / PREFIX / REVISION / name
        return f"{self.prefix}{REVISION}/{name}/{sorted(folder.glob('*.m4s'))[0].name}"


def make_source(target: Path, seconds: int = SECONDS) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(target),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip


def package_ladder(root: Path, work: Path) -> Ladder:
    """Package a test pattern into ``root/assets/media/intro`` as a VideoAsset Job does."""
    make_source(root / "uploads" / "pattern.mp4")
    result_file = work / "result.json"
    args = [
        sys.executable, "-m", "vod_stream", "package", "--source-path", "uploads/pattern.mp4",
        "--media-root", str(root), "--prefix", PREFIX, "--revision", REVISION,
        *(arg for r in RENDITIONS for arg in ("--rendition", r)),
        "--segment-seconds", "2", "--poster-at", "3", "--storyboard-interval", "2",
        "--preset", "ultrafast", "--work-dir", str(work / "scratch"),
        "--result-file", str(result_file),
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return Ladder(root, f"/{PREFIX}/", json.loads(result_file.read_text()))


def write_keys(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kid, key in KEYS.items():
        (folder / kid).write_bytes(key)
