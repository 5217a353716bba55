"""The examples/ the demo applies: which VideoPlatforms and claims they hold, and a storage
stand-in for clusters without a provisioner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vod_delivery import project


@dataclass(frozen=True)
class Platform:
    """A VideoPlatform from examples/."""

    namespace: str
    name: str
    signed_urls: bool
    #: uploads are on (`spec.security.jwt` names the key that signs upload tokens)
    uploads: bool = False
    signed_url_ttl: int = 3600


def example_documents(examples: Path = project.EXAMPLES_DIR) -> Iterator[dict[str, Any]]:
    """Every object in examples/*.yaml."""
    for path in sorted(examples.glob("*.y*ml")):
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def example_platforms(docs: list[dict[str, Any]]) -> list[Platform]:
    """The VideoPlatforms among the examples, the ones with signed URLs first."""
    found = []
    for d in docs:
        if d.get("kind") != "VideoPlatform":
            continue
        security = d.get("spec", {}).get("security", {})
        signed = security.get("signedUrls", {})
        found.append(
            Platform(
                d["metadata"].get("namespace", "default"),
                d["metadata"]["name"],
                bool(signed.get("enabled")),
                uploads=bool(security.get("jwt")),
                signed_url_ttl=int(signed.get("ttlSeconds", 3600)),
            )
        )
    return sorted(found, key=lambda p: (not p.signed_urls, p.namespace, p.name))


def example_claims(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of the PersistentVolumeClaims among the examples."""
    return [
        (d["metadata"].get("namespace", "default"), d["metadata"]["name"])
        for d in docs
        if d.get("kind") == "PersistentVolumeClaim"
    ]


def hostpath_volume(namespace: str, claim: str, path: Path) -> dict[str, Any]:
    """A PersistentVolume pre-bound to one claim, backed by a local folder.

    The local cluster has no storage provisioner; the real node mounts the folder into the pods.
    """
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"vod-demo-{namespace}-{claim}",
            "labels": {"app.kubernetes.io/part-of": "vod-operator-demo"},
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": namespace, "name": claim},
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        },
    }
