"""Image archives without an engine: write and read OCI image layout tars (pure functions).

An archive written here is both an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`)
and a docker-archive (`manifest.json` pointing at the same blobs), as `docker save` writes since
Docker 25: `ctr images import` reads the former, `docker load` (20.10 too) the latter. Every byte
is a function of the inputs (fixed mtimes, owners and `created`), so equal inputs give equal
digests, and the image's config digest (its id for Docker and for the kubelet) is known before
any engine sees it.

`read_archive` also reads what `docker save` writes (docker-archive only), so the same code
answers "which image, which config digest" for every archive localcluster keeps.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: containerd's annotation for the full image name (`ctr images import` names the image by it).
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
#: The `created` of every image written here: a constant, so equal inputs give equal digests.
EPOCH = "1970-01-01T00:00:00Z"
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def canonical_json(value: Any) -> bytes:
    """The bytes a JSON document is stored as (sorted keys, no spaces): stable digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def blob_path(digest: str) -> str:
    """`sha256:abc...` -> `blobs/sha256/abc...`, the blob's member name in the layout."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"blobs/{algorithm}/{hexdigest}"


@dataclass(frozen=True)
class LayerFile:
    """One regular file of a layer written from memory (e.g. the static `/pause`)."""

    path: str
    data: bytes
    mode: int = 0o755


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(files: Sequence[LayerFile]) -> bytes:
    """An uncompressed layer holding `files` (and their parent directories), byte-stable."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for item in sorted(files, key=lambda f: f.path):
            relative = PurePosixPath(item.path.lstrip("/"))
            for parent in reversed(relative.parents[:-1]):
                if str(parent) not in directories:
                    directories.add(str(parent))
                    info = _normalise(tarfile.TarInfo(str(parent)))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = _normalise(tarfile.TarInfo(str(relative)))
            info.size, info.mode = len(item.data), item.mode
            tar.addfile(info, io.BytesIO(item.data))
    return buffer.getvalue()


@dataclass(frozen=True)
class Layer:
    """An uncompressed layer tar on disk: its digest is also its diff_id."""

    path: Path
    digest: str
    size: int

    @classmethod
    def of(cls, path: Path) -> Layer:
        return cls(path=path, digest=digest_file(path), size=path.stat().st_size)


@dataclass(frozen=True)
class RuntimeConfig:
    """The `config` part of an image config: what a container runs and as whom."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.env:
            out["Env"] = list(self.env)
        if self.user:
            out["User"] = self.user
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


def image_config(
    layers: Sequence[Layer], runtime: RuntimeConfig, *, architecture: str = "amd64"
) -> dict[str, Any]:
    """An OCI image config (also a valid Docker one) for `layers` in order."""
    return {
        "architecture": architecture,
        "os": "linux",
        "created": EPOCH,
        "config": runtime.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": [{"created": EPOCH, "created_by": "localcluster"} for _ in layers],
    }


@dataclass(frozen=True)
class ArchiveInfo:
    """What an image archive holds: its name(s) and the digests that identify it."""

    refs: tuple[str, ...]
    #: the config's digest: Docker's image id, the kubelet's imageID
    config_digest: str
    #: the manifest's digest (None for a docker-archive, which stores no manifest of its own)
    manifest_digest: str | None
    layer_digests: tuple[str, ...]
    config: dict[str, Any]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _normalise(tarfile.TarInfo(name))
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    info = _normalise(tarfile.TarInfo(name))
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_stream(tar: tarfile.TarFile, name: str, stream: IO[bytes], size: int) -> None:
    info = _normalise(tarfile.TarInfo(name))
    info.size, info.mode = size, 0o644
    tar.addfile(info, stream)


def repository_tag(ref: str) -> str:
    """`registry/name:tag` -> `tag` (the short name OCI's ref.name annotation carries)."""
    last = ref.rsplit("/", 1)[-1]
    return last.partition(":")[2] or "latest"


def write_archive(
    out: Path, ref: str, layers: Sequence[Layer], runtime: RuntimeConfig
) -> ArchiveInfo:
    """Write an image named `ref` with `layers` as an OCI layout + docker-archive tar at `out`

    (atomically: a partial file is renamed into place)."""
    config = image_config(layers, runtime)
    config_bytes = canonical_json(config)
    config_digest = digest_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers
        ],
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = digest_bytes(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": config["architecture"], "os": config["os"]},
                "annotations": {CONTAINERD_NAME: ref, OCI_REF_NAME: repository_tag(ref)},
            }
        ],
    }
    docker_manifest = [
        {
            "Config": blob_path(config_digest),
            "RepoTags": [ref],
            "Layers": [blob_path(layer.digest) for layer in layers],
        }
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        for directory in ("blobs", "blobs/sha256"):
            _add_directory(tar, directory)
        written: set[str] = set()
        for layer in layers:
            if layer.digest in written:  # the same layer twice is stored once
                continue
            written.add(layer.digest)
            with layer.path.open("rb") as stream:
                _add_stream(tar, blob_path(layer.digest), stream, layer.size)
        _add_bytes(tar, blob_path(config_digest), config_bytes)
        _add_bytes(tar, blob_path(manifest_digest), manifest_bytes)
        _add_bytes(tar, "index.json", canonical_json(index))
        _add_bytes(tar, "manifest.json", canonical_json(docker_manifest))
    partial.replace(out)
    return ArchiveInfo(
        refs=(ref,),
        config_digest=config_digest,
        manifest_digest=manifest_digest,
        layer_digests=tuple(layer.digest for layer in layers),
        config=config,
    )


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file in the archive")
    return member.read()


def _member_names(tar: tarfile.TarFile) -> set[str]:
    return {name.removeprefix("./") for name in tar.getnames()}


def read_archive(path: Path) -> ArchiveInfo:
    """Names and digests of the (single) image in an OCI layout or docker-archive tar."""
    with tarfile.open(path, mode="r:") as tar:
        names = _member_names(tar)
        if "index.json" in names:
            index = json.loads(_read_member(tar, "index.json"))
            (descriptor,) = index["manifests"]
            manifest = json.loads(_read_member(tar, blob_path(descriptor["digest"])))
            config_digest = manifest["config"]["digest"]
            config = json.loads(_read_member(tar, blob_path(config_digest)))
            annotations = descriptor.get("annotations", {})
            ref = annotations.get(CONTAINERD_NAME) or annotations.get(OCI_REF_NAME)
            return ArchiveInfo(
                refs=(ref,) if ref else (),
                config_digest=config_digest,
                manifest_digest=descriptor["digest"],
                layer_digests=tuple(layer["digest"] for layer in manifest["layers"]),
                config=config,
            )
        (entry,) = json.loads(_read_member(tar, "manifest.json"))
        config_bytes = _read_member(tar, entry["Config"])
        config = json.loads(config_bytes)
        return ArchiveInfo(
            refs=tuple(entry.get("RepoTags") or ()),
            config_digest=digest_bytes(config_bytes),
            manifest_digest=None,
            layer_digests=tuple(config["rootfs"]["diff_ids"]),
            config=config,
        )


def _hash_member(tar: tarfile.TarFile, name: str) -> tuple[str, int]:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file in the archive")
    sha, size = hashlib.sha256(), 0
    while chunk := member.read(_CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


def verify_archive(path: Path) -> list[str]:
    """Every inconsistency between an archive's descriptors and its blobs (empty: consistent).

    Checks, for an OCI layout: each descriptor's blob exists, hashes to its digest and has its
    size; the config's diff_ids are the layers; the docker manifest.json (if any) names the same
    config and layers. For a docker-archive: the config and layer files hash to what the config
    says."""
    problems: list[str] = []
    with tarfile.open(path, mode="r:") as tar:
        names = _member_names(tar)

        def check(descriptor: dict[str, Any]) -> None:
            name = blob_path(descriptor["digest"])
            if name not in names:
                problems.append(f"missing blob {name}")
                return
            digest, size = _hash_member(tar, name)
            if digest != descriptor["digest"]:
                problems.append(f"{name} hashes to {digest}")
            if size != descriptor["size"]:
                problems.append(f"{name} has {size} bytes, not {descriptor['size']}")

        if "index.json" in names:
            if "oci-layout" not in names:
                problems.append("no oci-layout file")
            index = json.loads(_read_member(tar, "index.json"))
            for descriptor in index["manifests"]:
                check(descriptor)
                manifest = json.loads(_read_member(tar, blob_path(descriptor["digest"])))
                check(manifest["config"])
                for layer in manifest["layers"]:
                    check(layer)
                config = json.loads(_read_member(tar, blob_path(manifest["config"]["digest"])))
                layers = [layer["digest"] for layer in manifest["layers"]]
                if config["rootfs"]["diff_ids"] != layers:
                    problems.append("config diff_ids are not the manifest's (uncompressed) layers")
                if "manifest.json" in names:
                    (entry,) = json.loads(_read_member(tar, "manifest.json"))
                    if entry["Config"] != blob_path(manifest["config"]["digest"]):
                        problems.append("manifest.json names another config")
                    if entry["Layers"] != [blob_path(digest) for digest in layers]:
                        problems.append("manifest.json names other layers")
        else:
            (entry,) = json.loads(_read_member(tar, "manifest.json"))
            config = json.loads(_read_member(tar, entry["Config"]))
            diff_ids = config["rootfs"]["diff_ids"]
            if len(diff_ids) != len(entry["Layers"]):
                problems.append("manifest.json and config disagree on the layer count")
            for diff_id, layer_name in zip(diff_ids, entry["Layers"], strict=False):
                digest, _ = _hash_member(tar, layer_name)
                if digest != diff_id:
                    problems.append(f"{layer_name} hashes to {digest}, config says {diff_id}")
    return problems


def filtered_layer(
    source: IO[bytes], out: Path, drop: Iterable[str] = (), keep_directories: Iterable[str] = ()
) -> Layer:
    """Copy a tar stream (e.g. mmdebstrap's root filesystem) into a layer file at `out`,

    leaving out members under the `drop` prefixes (paths without a leading `./`), except the
    directories named in `keep_directories` themselves."""
    dropped = tuple(prefix.strip("/") for prefix in drop)
    kept = {directory.strip("/") for directory in keep_directories}
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tarfile.open(fileobj=source, mode="r|") as reader,
        tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as writer,
    ):
        for member in reader:
            name = member.name.removeprefix("./").rstrip("/")
            if name in kept and member.isdir():
                writer.addfile(member)
                continue
            if any(name == prefix or name.startswith(prefix + "/") for prefix in dropped):
                continue
            writer.addfile(member, reader.extractfile(member) if member.isreg() else None)
    return Layer.of(out)


def iter_members(path: Path) -> Iterator[str]:
    """The member names of a tar file (tests and diagnostics)."""
    with tarfile.open(path, mode="r:") as tar:
        yield from tar.getnames()
