"""Pure: a VideoAsset and its VideoPlatform -> what to package, or why it has to wait.

The revision is a digest of everything that shapes the outputs (the source, the resolved ladder,
poster, storyboard, segment length, preset, and the retry annotation). A new revision means a
new packaging Job; anything else (retainOutputs, the Job's resources) does not re-package.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vod_operator import naming
from vod_operator.assets import upload

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """`1m30s` -> 90.0, `1.5s` -> 1.5 (the CRD's pattern guarantees the syntax)."""
    parts = _DURATION_PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


@dataclass(frozen=True)
class Wait:
    """The asset cannot be packaged now: a CamelCase reason and what to do about it."""

    reason: str
    message: str


@dataclass(frozen=True)
class Package:
    """What one packaging run makes, fully resolved."""

    source: Mapping[str, Any]
    renditions: tuple[Mapping[str, Any], ...]
    segment_seconds: int
    preset: str
    poster_at: float | None
    storyboard_interval: int | None
    retry: str

    @property
    def revision(self) -> str:
        """12 hex digits of sha256 over the canonical JSON of the outputs' shape."""
        payload = json.dumps(
            {
                "source": self.source,
                "renditions": self.renditions,
                "segmentSeconds": self.segment_seconds,
                "preset": self.preset,
                "posterAt": self.poster_at,
                "storyboardInterval": self.storyboard_interval,
                "retry": self.retry,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def rendition_argument(rendition: Mapping[str, Any]) -> str:
    """One rendition as `vod-stream package --rendition` takes it: NAME:HEIGHT:VIDEOk:AUDIOk."""
    audio = rendition.get("audioBitrate", "128k")
    return f"{rendition['name']}:{rendition['height']}:{rendition['videoBitrate']}:{audio}"


def package(asset: Mapping[str, Any], platform: Mapping[str, Any]) -> Package:
    """Resolve the asset's spec against the platform's spec.transcoding defaults."""
    spec = asset["spec"]
    transcoding = platform["spec"]["transcoding"]
    renditions = spec.get("renditions") or transcoding["renditions"]
    poster = spec.get("poster", {})
    storyboard = spec.get("storyboard", {})
    annotations = asset["metadata"].get("annotations") or {}
    source = dict(spec["source"])
    if "upload" in source:  # packaged from where the upload lands
        source = {"path": upload.target(asset)}
    return Package(
        source=source,
        renditions=tuple(
            {**r, "audioBitrate": r.get("audioBitrate", "128k")}
            for r in sorted(renditions, key=lambda r: -int(r["height"]))
        ),
        segment_seconds=int(transcoding.get("segmentSeconds", 4)),
        preset=str(transcoding.get("preset", "veryfast")),
        poster_at=seconds(poster.get("at", "1s")) if poster.get("enabled", True) else None,
        storyboard_interval=(
            int(storyboard.get("interval", 10)) if storyboard.get("enabled", True) else None
        ),
        retry=str(annotations.get(naming.RETRY_ANNOTATION, "")),
    )


def writable_origin(storage: Mapping[str, Any]) -> bool:
    """Whether packaging and clean-up Jobs can write the platform's origin: a shared volume
    (pvc) or an S3 bucket (an http origin is read-only, an emptyDir is per pod)."""
    return bool(storage.get("pvc") or storage.get("s3"))


def blocked(asset: Mapping[str, Any], platform: Mapping[str, Any] | None) -> Wait | None:
    """Why the asset cannot get a packaging Job from this platform, or None when it can."""
    namespace = asset["metadata"]["namespace"]
    ref = asset["spec"]["platformRef"]["name"]
    if platform is None or platform["metadata"].get("deletionTimestamp"):
        return Wait(
            "PlatformNotFound",
            f"VideoPlatform {ref} does not exist in namespace {namespace}: create it or fix "
            "spec.platformRef.name",
        )
    spec = platform["spec"]
    if not spec["transcoding"].get("enabled", True):
        return Wait(
            "TranscodingDisabled",
            f"VideoPlatform {ref} has spec.transcoding.enabled=false: set it to true to package",
        )
    if spec.get("suspend"):
        return Wait("PlatformSuspended", f"VideoPlatform {ref} is suspended (spec.suspend)")
    if spec["storage"].get("emptyDir"):
        return Wait(
            "OriginNotShared",
            f"VideoPlatform {ref} stores videos in a per-pod emptyDir, which a packaging Job "
            "cannot reach: give it spec.storage.pvc",
        )
    if not writable_origin(spec["storage"]):
        return Wait(
            "OriginNotSupported",
            f"VideoPlatform {ref} reads videos from an http origin, which is read-only: packaging "
            "Jobs write into a pvc or s3 origin, give the assets such a platform",
        )
    return None
