"""Put image archives into a containerd (`ctr images import`), skipping what it already has.

"Already has" means: an image of the same name whose config digest (the image id the kubelet
reports) equals the archive's. The config digest is used rather than the manifest digest because
containerd writes its own manifest for a docker-archive (what `docker save` produces), while the
config travels unchanged in both archive formats.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import ociarchive
from localcluster.requirements import require

#: The containerd namespace the kubelet (CRI) uses.
K8S_NAMESPACE = "k8s.io"


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Loaded:
    ref: str
    #: "imported", or "present" when containerd already had the same image
    action: str
    seconds: float


def normalize_ref(ref: str) -> str:
    """A reference as containerd names it: `x:1` -> `docker.io/library/x:1`."""
    first, slash, _ = ref.partition("/")
    if not slash:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def parse_image_list(output: str) -> dict[str, str]:
    """`ctr images ls` output -> {name: target digest}."""
    images: dict[str, str] = {}
    for line in output.splitlines()[1:]:
        words = line.split()
        if len(words) >= 3 and words[2].startswith("sha256:"):
            images[words[0]] = words[2]
    return images


def ctr(address: Path | str, namespace: str, *args: str) -> str:
    """`ctr --address A --namespace N args...`: stdout, or raise with stderr."""
    argv = ["ctr", "--address", str(address), "--namespace", namespace, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LoadError(f"{' '.join(argv)} failed:\n{proc.stderr.strip()[-3000:]}")
    return proc.stdout


def _linux_amd64(index: dict[str, Any]) -> str | None:
    for descriptor in index.get("manifests", []):
        platform = descriptor.get("platform") or {}
        if platform.get("os", "linux") == "linux" and platform.get("architecture") in (
            None,
            "amd64",
        ):
            return str(descriptor["digest"])
    return None


def config_digest(address: Path | str, ref: str, namespace: str = K8S_NAMESPACE) -> str | None:
    """The config digest of containerd's image `ref`, None when it has no such image."""
    ref = normalize_ref(ref)
    target = parse_image_list(ctr(address, namespace, "images", "ls", f"name=={ref}")).get(ref)
    if target is None:
        return None
    document = json.loads(ctr(address, namespace, "content", "get", target))
    if "manifests" in document:  # an index: follow the linux/amd64 manifest
        manifest = _linux_amd64(document)
        if manifest is None:
            return None
        document = json.loads(ctr(address, namespace, "content", "get", manifest))
    digest = (document.get("config") or {}).get("digest")
    return str(digest) if digest else None


def archive_identity(archive: Path) -> tuple[str, str]:
    """(name, config digest) of the image an archive holds (its `.json` note when present)."""
    note = archive.with_suffix(".json")
    if note.is_file():
        data = json.loads(note.read_text())
        return str(data["ref"]), str(data["config_digest"])
    info = ociarchive.read_archive(archive)
    if not info.refs:
        raise LoadError(f"{archive} names no image")
    return info.refs[0], info.config_digest


def load(
    archive: Path | str, containerd_address: Path | str, namespace: str = K8S_NAMESPACE
) -> Loaded:
    """Import `archive` into the containerd at `containerd_address` (its grpc socket), unless it
    already has the same image; the image is unpacked for the default snapshotter."""
    began = time.monotonic()
    require(["ctr"], "loading images into containerd", root=False)
    archive = Path(archive)
    ref, digest = archive_identity(archive)
    if config_digest(containerd_address, ref, namespace) == digest:
        return Loaded(normalize_ref(ref), "present", time.monotonic() - began)
    ctr(containerd_address, namespace, "images", "import", str(archive))
    found = config_digest(containerd_address, ref, namespace)
    if found != digest:
        raise LoadError(f"imported {archive}, but containerd's {ref} has config {found}")
    return Loaded(normalize_ref(ref), "imported", time.monotonic() - began)
