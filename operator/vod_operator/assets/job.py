"""Pure rendering of a VideoAsset's Jobs: the packaging Job of one revision, the clean-up Job.

Same conventions as the platform's children (`vod_operator.render`): canonical manifests from
templates/, the applied-hash annotation, an ownerReference to the VideoAsset. A pvc platform's
Jobs mount its claim at /media; an s3 platform's Jobs get the streaming pods' origin settings
and credential/CA volumes (`render.origin_env`, `render.origin_volumes`) and no media volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vod_operator import naming
from vod_operator.assets.plan import Package, rendition_argument
from vod_operator.render import (
    environment,
    manifest_of,
    origin_env,
    origin_kind,
    origin_volumes,
    owner_reference,
)

HEADERS_MOUNT = "/etc/vod/source-headers"
RESULT_FILE = "/dev/termination-log"
WORK_DIR = "/tmp/vod-package"
#: The clean-up Job deletes a folder: small and quick.
UNPUBLISH_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


def job_labels(
    asset: Mapping[str, Any], platform: Mapping[str, Any], component: str, revision: str | None
) -> dict[str, str]:
    """Standard labels, which asset/platform/revision, and Kueue's queue when one is set."""
    platform_name = platform["metadata"]["name"]
    labels = {
        **naming.child_labels(platform_name, component),
        naming.ASSET_LABEL: asset["metadata"]["name"],
        naming.PLATFORM_LABEL: platform_name,
    }
    if revision is not None:
        labels[naming.REVISION_LABEL] = revision
    queue = platform["spec"]["transcoding"].get("queueName")
    if queue:
        labels[naming.KUEUE_QUEUE_LABEL] = str(queue)
    return labels


def _origin_args(storage: Mapping[str, Any]) -> list[str]:
    """`--media-root` for a mounted origin; an s3 origin comes from the Job's environment."""
    return ["--media-root", naming.MEDIA_MOUNT] if origin_kind(storage) == "file" else []


def package_args(asset: Mapping[str, Any], plan: Package, storage: Mapping[str, Any]) -> list[str]:
    """The `vod-stream package` command line for one revision (`storage`: the platform's
    spec.storage)."""
    meta = asset["metadata"]
    source = plan.source
    args = ["package"]
    if "url" in source:
        args += ["--source-url", str(source["url"])]
        if source.get("headersSecretRef"):
            args += ["--headers-dir", HEADERS_MOUNT]
    else:
        args += ["--source-path", str(source["path"])]
    args += _origin_args(storage)
    args += [
        "--prefix", naming.asset_prefix(meta["namespace"], meta["name"]),
        "--revision", plan.revision,
    ]  # fmt: skip
    for rendition in plan.renditions:
        args += ["--rendition", rendition_argument(rendition)]
    args += ["--segment-seconds", str(plan.segment_seconds), "--preset", plan.preset]
    if plan.poster_at is not None:
        args += ["--poster-at", f"{plan.poster_at:g}"]
    if plan.storyboard_interval is not None:
        args += ["--storyboard-interval", str(plan.storyboard_interval)]
    args += ["--work-dir", WORK_DIR, "--result-file", RESULT_FILE]
    return args


def unpublish_args(namespace: str, name: str, storage: Mapping[str, Any]) -> list[str]:
    prefix = naming.asset_prefix(namespace, name)
    return ["unpublish", *_origin_args(storage), "--prefix", prefix]


def _render(context: Mapping[str, Any]) -> dict[str, Any]:
    return manifest_of(environment().get_template("job.yaml.j2").render(context))


def _common(asset: Mapping[str, Any], platform: Mapping[str, Any], image: str) -> dict[str, Any]:
    spec = platform["spec"]
    storage = spec["storage"]
    mounted = origin_kind(storage) == "file"
    return {
        "namespace": asset["metadata"]["namespace"],
        "owner_references": [owner_reference(asset, naming.ASSET_KIND)],
        "image": image,
        "image_pull_policy": spec.get("imagePullPolicy", "IfNotPresent"),
        "claim_name": storage["pvc"]["claimName"] if mounted else None,
        "origin_env": {} if mounted else origin_env(storage),
        "origin_volumes": origin_volumes(storage),
    }


def package_job(
    asset: Mapping[str, Any],
    platform: Mapping[str, Any],
    plan: Package,
    image: str = naming.DEFAULT_PACKAGING_IMAGE,
) -> dict[str, Any]:
    """The packaging Job of `plan.revision` (the platform has a pvc or an s3 origin), run with
    the packaging image `image` (the operator's setting; the platform's spec.image is the
    serving image, which has no ffmpeg)."""
    transcoding = platform["spec"]["transcoding"]
    source = plan.source
    return _render(
        {
            **_common(asset, platform, image),
            "job_name": naming.package_job(asset["metadata"]["name"], plan.revision),
            "labels": job_labels(asset, platform, "packaging", plan.revision),
            "container": "package",
            "args": package_args(asset, plan, platform["spec"]["storage"]),
            "resources": transcoding["resources"],
            "backoff_limit": transcoding.get("backoffLimit", 2),
            "active_deadline_seconds": transcoding.get("activeDeadlineSeconds", 21600),
            "ttl_seconds_after_finished": transcoding.get("ttlSecondsAfterFinished", 3600),
            "scratch_size": transcoding.get("scratchSize", "20Gi"),
            "headers_secret": (source.get("headersSecretRef") or {}).get("name"),
        }
    )


def unpublish_job(
    asset: Mapping[str, Any],
    platform: Mapping[str, Any],
    image: str = naming.DEFAULT_PACKAGING_IMAGE,
) -> dict[str, Any]:
    """The Job that deletes the asset's outputs (its whole prefix) from the origin (same image
    as the packaging Jobs: a node that packaged has it)."""
    meta = asset["metadata"]
    return _render(
        {
            **_common(asset, platform, image),
            "job_name": naming.unpublish_job(meta["name"]),
            "labels": job_labels(asset, platform, "cleanup", None),
            "container": "unpublish",
            "args": unpublish_args(meta["namespace"], meta["name"], platform["spec"]["storage"]),
            "resources": UNPUBLISH_RESOURCES,
            "backoff_limit": 2,
            "active_deadline_seconds": 600,
            "ttl_seconds_after_finished": 300,
            "scratch_size": "64Mi",
            "headers_secret": None,
        }
    )
