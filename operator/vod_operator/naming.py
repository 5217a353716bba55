"""Names shared by every module: the custom resources' API, child names and the standard labels."""

from __future__ import annotations

from dataclasses import dataclass

from vod_operator import __version__

GROUP = "videoplatform.io"
VERSION = "v1alpha1"
PLURAL = "videoplatforms"
KIND = "VideoPlatform"
API_VERSION = f"{GROUP}/{VERSION}"
ASSET_KIND = "VideoAsset"
ASSET_PLURAL = "videoassets"

FIELD_MANAGER = "vod-operator"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
APP_NAME = "vod-stream"
PART_OF = "videoplatform"
CONFIG_HASH_ANNOTATION = "videoplatform.io/config-hash"
#: On every child: checksum of the manifest last applied (a change means: apply, so that
#: fields the operator stopped sending are removed by server-side apply).
APPLIED_HASH_ANNOTATION = "videoplatform.io/applied-hash"
DEFAULT_IMAGE = f"ghcr.io/vod-operator/vod-stream:{__version__}"
#: The VideoAsset Jobs' image: the streaming image plus ffmpeg/ffprobe (streaming/Dockerfile's
#: `packaging` target); the operator's setting VOD_OPERATOR_PACKAGING_IMAGE overrides it.
DEFAULT_PACKAGING_IMAGE = f"ghcr.io/vod-operator/vod-stream-packaging:{__version__}"
#: On a VideoAsset while its outputs must be removed before it goes (not with retainOutputs).
OUTPUTS_FINALIZER = "videoplatform.io/outputs"
#: On packaging Jobs and their pods: which asset, platform and output revision they serve.
ASSET_LABEL = "videoplatform.io/asset"
PLATFORM_LABEL = "videoplatform.io/platform"
REVISION_LABEL = "videoplatform.io/revision"
#: What the Job controller puts on a Job's pods (Kubernetes >= 1.27).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
#: Kueue picks up Jobs carrying this label (spec.transcoding.queueName).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: Change it (any value) to package a Failed VideoAsset again without changing its spec.
RETRY_ANNOTATION = "videoplatform.io/retry"
#: Where packaged outputs live in the origin, and the mount of the origin in the Job.
ASSETS_ROOT = "assets"
MEDIA_MOUNT = "/media"
PORT = 8080


@dataclass(frozen=True)
class ChildNames:
    """Names of the children of one VideoPlatform."""

    stream: str
    config: str
    signing: str

    @classmethod
    def of(cls, platform_name: str) -> ChildNames:
        stream = f"{platform_name}-stream"
        return cls(stream=stream, config=f"{stream}-config", signing=f"{stream}-signing")


def selector_labels(platform_name: str) -> dict[str, str]:
    """The immutable Deployment selector: never includes the version."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        INSTANCE: platform_name,
        "app.kubernetes.io/component": "streaming",
    }


def child_labels(platform_name: str, component: str) -> dict[str, str]:
    """The standard app.kubernetes.io/* labels every child carries."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        INSTANCE: platform_name,
        "app.kubernetes.io/component": component,
        MANAGED_BY: FIELD_MANAGER,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/version": __version__,
    }


def instance_selector(platform_name: str) -> str:
    """Label selector (string form) matching every child of one VideoPlatform."""
    return f"{MANAGED_BY}={FIELD_MANAGER},{INSTANCE}={platform_name}"


def endpoint(platform_name: str, namespace: str) -> str:
    """In-cluster URL of the streaming Service."""
    return f"http://{ChildNames.of(platform_name).stream}.{namespace}.svc:{PORT}"


def asset_prefix(namespace: str, name: str) -> str:
    """The folder of one VideoAsset's outputs, relative to the origin's root."""
    return f"{ASSETS_ROOT}/{namespace}/{name}"


def package_job(asset_name: str, revision: str) -> str:
    """The packaging Job of one revision of an asset (at most 40 + 9 + 12 = 61 characters)."""
    return f"{asset_name}-package-{revision}"


def unpublish_job(asset_name: str) -> str:
    return f"{asset_name}-unpublish"


def asset_selector(asset_name: str) -> str:
    """Label selector of the Jobs the operator made for one VideoAsset."""
    return f"{MANAGED_BY}={FIELD_MANAGER},{ASSET_LABEL}={asset_name}"
