"""The demo's VideoAsset: the uploaded video packaged into an HLS ladder by the operator's Job,
watched until Ready with each phase and progress change printed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from localcluster.handle import KubeCluster
from vod_delivery.report import Reporter

NAME = "demo"
#: Two rungs no taller than the demo's 360-line video (the platform's own ladder starts at 480p,
#: and renditions taller than the source are skipped): the player has a rendition to switch to.
RENDITIONS = (
    {"name": "360p", "height": 360, "videoBitrate": "800k"},
    {"name": "240p", "height": 240, "videoBitrate": "400k", "audioBitrate": "96k"},
)
READY_TIMEOUT = 300.0


def manifest(namespace: str, platform: str, source_path: str) -> dict[str, Any]:
    """The VideoAsset `demo`: a file already in the platform's storage (the upload)."""
    return {
        "apiVersion": "videoplatform.io/v1alpha1",
        "kind": "VideoAsset",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "platformRef": {"name": platform},
            "source": {"path": source_path},
            "renditions": [dict(r) for r in RENDITIONS],
            "poster": {"at": "2s"},
            "storyboard": {"enabled": True, "interval": 2},
        },
    }


def prefix(namespace: str, name: str = NAME) -> str:
    """The URL folder the asset's outputs are served under (what a path token signs)."""
    return f"/assets/{namespace}/{name}/"


def progress_line(status: dict[str, Any]) -> str:
    """`phase Processing, 42%` (and what the Ready condition says while it is not True)."""
    phase = status.get("phase") or "-"
    progress = status.get("progress")
    line = f"phase {phase}" + (f", {progress}%" if progress is not None else "")
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True" and ready.get("reason"):
        line += f" ({ready['reason']})"
    return line


def is_ready(va: dict[str, Any]) -> bool:
    """Ready for the current spec (not a Ready left over from an earlier generation)."""
    status = va.get("status", {})
    return bool(
        status.get("phase") == "Ready"
        and status.get("observedGeneration") == va["metadata"].get("generation")
    )


def wait_ready(
    report: Reporter,
    cluster: KubeCluster,
    namespace: str,
    timeout: float = READY_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the VideoAsset until Ready, printing each change of phase or progress; on Failed or
    after `timeout` seconds raise with its conditions and the packaging Job's last log lines."""
    began = clock()
    last = ""
    while True:
        out = cluster.kubectl("get", "va", NAME, "-n", namespace, "-o", "json").stdout
        va: dict[str, Any] = json.loads(out)
        status = va.get("status", {})
        line = progress_line(status)
        if line != last:
            report.info(f"{clock() - began:5.1f} s  {line}")
            last = line
        if is_ready(va):
            return va
        failed = status.get("phase") == "Failed"
        if failed or clock() - began > timeout:
            what = "failed" if failed else f"is not Ready after {timeout:.0f} s"
            raise RuntimeError(f"VideoAsset {namespace}/{NAME} {what}\n{diagnosis(cluster, va)}")
        time.sleep(0.5)


def diagnosis(cluster: KubeCluster, va: dict[str, Any]) -> str:
    """The asset's conditions and its packaging Job's last log lines."""
    status = va.get("status", {})
    lines = [
        f"  {c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message', '')}"
        for c in status.get("conditions", [])
    ]
    job = status.get("job")
    if job:
        logs = cluster.kubectl(
            "logs", f"job/{job}", "-n", va["metadata"]["namespace"], "--tail=30", check=False
        )
        lines.append(f"--- kubectl logs job/{job} --tail=30")
        lines.append((logs.stdout + logs.stderr).rstrip())
    return "\n".join(lines)
