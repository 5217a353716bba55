"""Media packaging benchmark (make bench-media).

Measures, and prints as a table:
  1. wall time of `vod-stream package` turning SECONDS of 1080p test pattern into the default
     ladder (the VideoPlatform's default spec.transcoding: 1080p/720p/480p/360p, veryfast, 4 s
     segments), as a ratio to ONE hand-written ffmpeg command producing the same ladder on the
     same machine: our orchestration overhead (probe, progress parsing, staged publish; target
     <= 1.10x). Rounds alternate the two so drift in machine load hits both; the median counts.
     Poster and storyboard are off for the ratio (the hand-written command makes neither) and
     measured once on top.
  2. with `--cluster` (or VOD_BENCH_CLUSTER=1) and a KUBECONFIG whose cluster has a real node:
     seconds from the packaging Job's start to `Playable` for the same source, as the packager
     logged it (its pod log's timestamps) and as `kubectl` shows it (the operator reads progress
     every 5 s). Needs the streaming image on that node (VOD_BENCH_STREAM_IMAGE, default the
     bundled tag) and runs the operator as a local process, like the cluster tests.
Bounded: every step has a timeout and the whole run a budget (--budget).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vod-operator" / "bench"
PLATFORM_CRD = ROOT / "crds" / "videoplatforms.videoplatform.io.yaml"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def default_ladder() -> list[dict[str, Any]]:
    """The VideoPlatform CRD's default spec.transcoding.renditions (the one source)."""
    crd = yaml.safe_load(PLATFORM_CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    ladder: list[dict[str, Any]] = spec["properties"]["transcoding"]["properties"]["renditions"][
        "default"
    ]
    return ladder


def make_source(seconds: int) -> Path:
    """SECONDS of 1920x1080 30 fps test pattern with a tone, made once and cached."""
    target = CACHE / f"testsrc2-1080p30-{seconds}s.mp4"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part.mp4")
        subprocess.run(
            [
                "ffmpeg", "-v", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(partial),
            ],
            check=True, timeout=1800,
        )  # fmt: skip
        partial.rename(target)
    return target


def hand_written(source: Path, out: Path) -> list[str]:
    """The reference: the default ladder in one ffmpeg command, as a person would write it."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", str(source),
        "-filter_complex",
        "[0:v]split=4[a][b][c][d];[a]scale=1920:1080[v0];[b]scale=1280:720[v1];"
        "[c]scale=854:480[v2];[d]scale=640:360[v3]",
        "-map", "[v0]", "-map", "0:a", "-map", "[v1]", "-map", "0:a",
        "-map", "[v2]", "-map", "0:a", "-map", "[v3]", "-map", "0:a",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-b:v:0", "5000k", "-maxrate:v:0", "5500k", "-bufsize:v:0", "10000k",
        "-b:v:1", "2800k", "-maxrate:v:1", "3080k", "-bufsize:v:1", "5600k",
        "-b:v:2", "1400k", "-maxrate:v:2", "1540k", "-bufsize:v:2", "2800k",
        "-b:v:3", "800k", "-maxrate:v:3", "880k", "-bufsize:v:3", "1600k",
        "-c:a", "aac", "-ac", "2", "-ar", "48000",
        "-b:a:0", "128k", "-b:a:1", "128k", "-b:a:2", "128k", "-b:a:3", "96k",
        "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod",
        "-hls_flags", "independent_segments", "-hls_segment_type", "fmp4",
        "-hls_segment_filename", f"{out}/%v/seg_%05d.m4s", "-master_pl_name", "master.m3u8",
        "-var_stream_map",
        "v:0,a:0,name:1080p v:1,a:1,name:720p v:2,a:2,name:480p v:3,a:3,name:360p",
        f"{out}/%v/index.m3u8",
    ]  # fmt: skip


def ours(source: Path, root: Path, revision: str, extras: bool) -> list[str]:
    """`vod-stream package` as the Job runs it, with the default ladder."""
    args = [
        sys.executable, "-m", "vod_stream", "package",
        "--source-path", source.name, "--media-root", str(root),
        "--prefix", "assets/bench/media", "--revision", revision,
        "--segment-seconds", "4", "--preset", "veryfast",
        "--work-dir", str(root.parent / f"work-{revision}"),
        "--report-seconds", "2",
    ]  # fmt: skip
    for r in default_ladder():
        audio = r.get("audioBitrate", "128k")
        args += ["--rendition", f"{r['name']}:{r['height']}:{r['videoBitrate']}:{audio}"]
    if extras:
        args += ["--poster-at", "1", "--storyboard-interval", "10"]
    return args


def timed(args: list[str], timeout: float) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def variants(master: Path) -> list[str]:
    """RESOLUTION and CODECS of each variant: the two ladders must be the same."""
    return [
        ",".join(p for p in line.split(",") if p.startswith(("RESOLUTION", "CODECS")))
        for line in master.read_text().splitlines()
        if line.startswith("#EXT-X-STREAM-INF")
    ]


def local_ratio(seconds: int, rounds: int, deadline: float) -> list[tuple[str, str]]:
    source = make_source(seconds)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="vod-bench-media-") as tmp:
        work = Path(tmp)
        root = work / "origin"
        root.mkdir()
        shutil.copy(source, root / source.name)
        reference, packaged = [], []

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining < 30:
                raise TimeoutError("benchmark time budget exhausted")
            return remaining

        for index in range(rounds):
            out = work / f"ref-{index}"
            out.mkdir()
            reference.append(timed(hand_written(root / source.name, out), left()))
            revision = f"{index + 1:012x}"
            packaged.append(timed(ours(root / source.name, root, revision, False), left()))
            mine = root / "assets/bench/media" / revision / "master.m3u8"
            assert variants(out / "master.m3u8") == variants(mine), "the ladders differ"
            print(
                f"round {index + 1}: hand-written {reference[-1]:.1f} s, "
                f"vod-stream package {packaged[-1]:.1f} s",
                flush=True,
            )
        full = timed(ours(root / source.name, root, "f" * 12, True), left())
        ref, pkg = statistics.median(reference), statistics.median(packaged)
        ratios = [p / r for p, r in zip(packaged, reference, strict=True)]
        names = ", ".join(str(r["name"]) for r in default_ladder())
        rows += [
            ("source", f"{seconds} s of 1920x1080 30 fps testsrc2 + sine (H.264/AAC)"),
            ("ladder", f"{names} (veryfast, 4 s segments)"),
            ("hand-written ffmpeg, median", f"{ref:.1f} s ({_times(reference)})"),
            ("vod-stream package, median", f"{pkg:.1f} s ({_times(packaged)})"),
            ("ratio (target <= 1.10)", f"{pkg / ref:.3f}x"),
            ("per round", ", ".join(f"{r:.3f}x" for r in ratios)),
            ("with poster + storyboard", f"{full:.1f} s (one run after the rounds: not a ratio)"),
        ]
    return rows


def _times(values: list[float]) -> str:
    return ", ".join(f"{t:.1f}" for t in values)


# -- on a cluster with a real node ----------------------------------------------------------


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        ["kubectl", *args], input=input, capture_output=True, text=True, timeout=120, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def real_node() -> str | None:
    if not os.environ.get("KUBECONFIG"):
        return None
    try:
        nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    except (RuntimeError, subprocess.TimeoutExpired, ValueError):
        return None
    for node in nodes:
        meta = node["metadata"]
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]
        )
        if ready and KWOK_ANNOTATION not in (meta.get("annotations") or {}):
            return str(meta["name"])
    return None


@contextmanager
def operator(log: Path) -> Iterator[None]:
    # No metrics server: its fixed default port could be taken on this host.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOD_OPERATOR_METRICS_PORT": "0"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vod_operator", "--liveness", ""],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def parse_time(stamp: str) -> float:
    """RFC 3339 (with or without fractions) -> POSIX seconds."""
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def cluster_playable(node: str, seconds: int, deadline: float) -> list[tuple[str, str]]:
    source = make_source(seconds)
    image = os.environ.get("VOD_BENCH_STREAM_IMAGE", "ghcr.io/vod-operator/vod-stream:0.1.0")
    namespace = f"bench-media-{int(time.time())}"
    folder = Path(tempfile.mkdtemp(prefix="vod-bench-origin-", dir="/tmp"))
    folder.chmod(0o777)
    (folder / "uploads").mkdir(mode=0o777)
    shutil.copy(source, folder / "uploads" / "source.mp4")
    (folder / "uploads" / "source.mp4").chmod(0o644)
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("create", "namespace", namespace)
    manifests = textwrap.dedent(f"""
        apiVersion: v1
        kind: PersistentVolume
        metadata: {{name: {namespace}}}
        spec:
          capacity: {{storage: 10Gi}}
          accessModes: [ReadWriteOnce]
          persistentVolumeReclaimPolicy: Retain
          hostPath: {{path: {folder}, type: Directory}}
          claimRef: {{namespace: {namespace}, name: videos}}
          nodeAffinity:
            required:
              nodeSelectorTerms:
                - matchExpressions:
                    - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
        ---
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {{name: videos, namespace: {namespace}}}
        spec:
          accessModes: [ReadWriteOnce]
          storageClassName: ""
          volumeName: {namespace}
          resources: {{requests: {{storage: 10Gi}}}}
        ---
        apiVersion: videoplatform.io/v1alpha1
        kind: VideoPlatform
        metadata: {{name: bench, namespace: {namespace}}}
        spec:
          image: {image}
          imagePullPolicy: Never
          replicas: 1
          podDisruptionBudget: {{enabled: false}}
          storage: {{pvc: {{claimName: videos}}}}
        ---
        apiVersion: videoplatform.io/v1alpha1
        kind: VideoAsset
        metadata: {{name: bench, namespace: {namespace}}}
        spec:
          platformRef: {{name: bench}}
          source: {{path: uploads/source.mp4}}
        """)  # fmt: skip
    try:
        with operator(folder.parent / f"{namespace}-operator.log"):
            kubectl("apply", "-f", "-", input=manifests)

            def asset() -> dict[str, Any]:
                return json.loads(kubectl("-n", namespace, "get", "va", "bench", "-o", "json"))  # type: ignore[no-any-return]

            def playable() -> bool:
                conditions = asset().get("status", {}).get("conditions", [])
                return any(c["type"] == "Playable" and c["status"] == "True" for c in conditions)

            wait_for(playable, timeout=max(60.0, deadline - time.monotonic()))
            seen_playable = time.time()
            job_name = asset()["status"]["job"]
            job = json.loads(kubectl("-n", namespace, "get", "job", job_name, "-o", "json"))
            started = parse_time(job["status"]["startTime"])
            log = kubectl("-n", namespace, "logs", f"job/{job_name}", "--timestamps")
            first = playable_at = None
            for line in log.splitlines():
                stamp, _, text = line.partition(" ")
                first = first or parse_time(stamp)
                if playable_at is None and '"playable":true' in text:
                    playable_at = parse_time(stamp)
            wait_for(lambda: asset()["status"].get("phase") in ("Ready", "Failed"), timeout=600)
            final = asset()["status"]
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kubectl("delete", "pv", namespace, "--wait=false", check=False)
    rows = [("cluster node", node), ("asset phase", str(final.get("phase")))]
    if playable_at is not None and first is not None:
        rows.append(("Job start -> Playable (packager's log)", f"{playable_at - started:.1f} s"))
        rows.append(("  of which the pod's start-up", f"{first - started:.1f} s"))
    rows.append(("Job start -> Playable (kubectl sees it)", f"{seen_playable - started:.1f} s"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the test pattern")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--budget", type=float, default=1800, help="whole run, in seconds")
    parser.add_argument(
        "--cluster", action="store_true", default=bool(os.environ.get("VOD_BENCH_CLUSTER"))
    )
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    rows = local_ratio(args.seconds, args.rounds, deadline)
    node = real_node() if args.cluster else None
    if args.cluster and node is None:
        rows.append(
            ("Job start -> Playable", "not measured: KUBECONFIG names no cluster with a real node")
        )
    elif node is not None:
        rows += cluster_playable(node, args.seconds, deadline)
    else:
        rows.append(("Job start -> Playable", "not measured here (--cluster with a real node)"))
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(dict(rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
