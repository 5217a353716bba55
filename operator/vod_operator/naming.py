"""Names shared by every module: the VideoPlatform API, child names and the standard labels."""

from __future__ import annotations

from dataclasses import dataclass

from vod_operator import __version__

GROUP = "videoplatform.io"
VERSION = "v1alpha1"
PLURAL = "videoplatforms"
KIND = "VideoPlatform"
API_VERSION = f"{GROUP}/{VERSION}"

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
