"""The project's container images without a registry (`python -m localcluster images`).

- `ensure_pause()`: Kubernetes' pause container, compiled statically with gcc from
  `build/pause/linux/pause.c` of the pinned k8s.io/kubernetes module and written as an image
  archive without any engine (`ociarchive`), named `PAUSE_IMAGE` (containerd's sandbox_image).
- `ensure_base()`: Debian bookworm with Python from Debian packages (`debianbase`), also written
  without an engine, so its id is known before any engine runs.
- `ensure_project_images()`: `streaming/Dockerfile` (its `serving` and `packaging` targets: the
  streaming image and the VideoAsset Jobs' image) and `operator/Dockerfile`, unchanged, built
  in a private dockerd (`engine`) with `--build-arg PYTHON_IMAGE=<local base>` (and
  `RUST_IMAGE=<local Rust builder>`, `rustbuilder`, for a Dockerfile that declares it), tagged as
  `make image` tags them, saved with `docker save`.
- `load(archive, containerd_address)` (`imageload`): `ctr images import`, skipped when that
  containerd already has the image.

Every archive is `<cache>/images/<name>-<content hash>.tar` with a `.json` note beside it; it is
reused while the hash of its inputs matches (`dockerfiles.input_hash` for Dockerfiles), so a warm
run starts no engine at all. One builder at a time (a lock file in the same folder).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from localcluster import debianbase, dockerfiles, ociarchive, rustbuilder
from localcluster.build import go, require_go
from localcluster.engine import Engine, private_engine
from localcluster.imageload import Loaded, load
from localcluster.paths import cache_root, engine_dir, exclusive, images_dir
from localcluster.requirements import require
from localcluster.versions import KUBERNETES_VERSION

#: As the Makefile's IMAGE_REGISTRY default: the names `make image` gives the project images.
IMAGE_REGISTRY = "ghcr.io/vod-operator"
#: Images that exist only on this machine are named below this (nothing could pull them).
LOCAL_REGISTRY = "localcluster.local"
#: containerd's `sandbox_image` for a real node.
PAUSE_IMAGE = f"{LOCAL_REGISTRY}/pause:{KUBERNETES_VERSION}"
#: How many hex digits of a content hash name an archive (and a local image's tag).
HASH_LENGTH = 16
P = ParamSpec("P")
R = TypeVar("R")


class ImagesError(RuntimeError):
    """An image could not be made; the message says why (with the log's tail)."""


def log(message: str) -> None:
    print(f"localcluster images: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Image:
    """An image archive in the cache, as one `ensure_*` call found or made it."""

    name: str  # e.g. "vod-stream"
    ref: str  # e.g. "ghcr.io/vod-operator/vod-stream:0.1.0"
    archive: Path
    config_digest: str  # the image id (Docker's, and the kubelet's imageID)
    input_hash: str
    action: str  # "built" or "reused"
    seconds: float  # how long this call took for it

    @property
    def size(self) -> int:
        return self.archive.stat().st_size


def archive_path(name: str, key: str) -> Path:
    return images_dir() / f"{name}-{key[:HASH_LENGTH]}.tar"


def _note(archive: Path) -> Path:
    return archive.with_suffix(".json")


def _reuse(name: str, archive: Path, began: float) -> Image | None:
    note = _note(archive)
    if not (archive.is_file() and note.is_file()):
        return None
    data = json.loads(note.read_text())
    os.utime(note)  # recently used: `prune` keeps it
    return Image(
        name,
        data["ref"],
        archive,
        data["config_digest"],
        data["input_hash"],
        "reused",
        time.monotonic() - began,
    )


def _record(name: str, archive: Path, input_hash: str, began: float) -> Image:
    """Write the note (what the archive holds, read from the archive itself) and prune."""
    info = ociarchive.read_archive(archive)
    if not info.refs:
        raise ImagesError(f"{archive} names no image")
    seconds = time.monotonic() - began
    note = {
        "ref": info.refs[0],
        "config_digest": info.config_digest,
        "input_hash": input_hash,
        "build_seconds": round(seconds, 1),
        "size": archive.stat().st_size,
    }
    _note(archive).write_text(json.dumps(note, indent=2) + "\n")
    prune(name)
    return Image(name, info.refs[0], archive, info.config_digest, input_hash, "built", seconds)


#: Archives kept per image name: several checkouts (or Kubernetes versions) share the cache,
#: each with its own inputs; the least recently used beyond this are removed.
KEEP_PER_NAME = 3


def prune(name: str, keep: int = KEEP_PER_NAME) -> list[Path]:
    """Remove all but the `keep` most recently used archives of `name`; returns the removed."""
    notes = []
    for archive in images_dir().glob(f"{name}-*.tar"):
        stem = archive.stem.removeprefix(f"{name}-")
        if len(stem) == HASH_LENGTH and "-" not in stem:  # not another name's (`a` vs `a-b`)
            note = _note(archive)
            notes.append((note.stat().st_mtime if note.is_file() else 0.0, archive))
    removed = [archive for _, archive in sorted(notes, reverse=True)[keep:]]
    for archive in removed:
        archive.unlink(missing_ok=True)
        _note(archive).unlink(missing_ok=True)
    return removed


def _hash(*parts: str) -> str:
    sha = hashlib.sha256()
    for part in (dockerfiles.HASH_SCHEME, *parts):
        sha.update(part.encode() + b"\n")
    return sha.hexdigest()


def builder_lock() -> contextlib.AbstractContextManager[None]:
    """One image builder at a time on this machine (they share one engine folder and cache)."""
    return exclusive(images_dir() / ".lock")


_held = threading.local()


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Hold the builder lock for a block; `ensure_*` calls inside it (in this thread) do not take
    it again (a plain `builder_lock()` around them would deadlock: flock is per open file)."""
    if getattr(_held, "lock", False):
        yield
        return
    with builder_lock():
        _held.lock = True
        try:
            yield
        finally:
            _held.lock = False


def _locked(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with building():
            return function(*args, **kwargs)

    return locked


# --- pause -----------------------------------------------------------------------------------


def pause_source(kubernetes_version: str = KUBERNETES_VERSION) -> Path:
    """`build/pause/linux/pause.c` of the k8s.io/kubernetes module (go downloads it once)."""
    require_go()
    workdir = cache_root() / "build" / "pause"
    workdir.mkdir(parents=True, exist_ok=True)
    spec = f"k8s.io/kubernetes@{kubernetes_version}"
    info = json.loads(go("mod", "download", "-json", spec, cwd=workdir))
    source = Path(info["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    if not source.is_file():
        raise ImagesError(f"no build/pause/linux/pause.c in {spec}")
    return source


def pause_tag(makefile: str) -> str:
    """The pause version build/pause/Makefile sets (`TAG ?= 3.10.1`), for `pause -v`."""
    for line in makefile.splitlines():
        name, assign, value = line.partition("?=")
        if assign and name.strip() == "TAG" and value.strip():
            return value.strip()
    return "unknown"


def pause_cflags(tag: str, kubernetes_version: str) -> list[str]:
    """Upstream's CFLAGS (build/pause/Makefile), `-s` for its strip."""
    return ["-Os", "-Wall", "-Werror", "-static", "-s", f"-DVERSION=v{tag}-{kubernetes_version}"]


#: As upstream's pause image: `USER 65535:65535`, `ENTRYPOINT ["/pause"]`.
PAUSE_RUNTIME = ociarchive.RuntimeConfig(entrypoint=("/pause",), user="65535:65535")


def write_pause_archive(binary: bytes, out: Path, ref: str) -> ociarchive.ArchiveInfo:
    """The pause image: one layer holding `/pause` (mode 0755), as an archive at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        layer = Path(scratch) / "layer.tar"
        layer.write_bytes(ociarchive.layer_tar([ociarchive.LayerFile("pause", binary)]))
        return ociarchive.write_archive(out, ref, [ociarchive.Layer.of(layer)], PAUSE_RUNTIME)


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return out.partition("\n")[0]


@_locked
def ensure_pause(kubernetes_version: str = KUBERNETES_VERSION) -> Image:
    """The pause image archive (`localcluster.local/pause:<kubernetes_version>`), compiled once:
    cached by the hash of pause.c, the flags and the compiler's version."""
    began = time.monotonic()
    source = pause_source(kubernetes_version)
    cflags = pause_cflags(
        pause_tag((source.parents[1] / "Makefile").read_text()), kubernetes_version
    )
    ref = f"{LOCAL_REGISTRY}/pause:{kubernetes_version}"
    key = _hash(
        hashlib.sha256(source.read_bytes()).hexdigest(),
        " ".join(cflags),
        _first_line(["gcc", "--version"]),
        ref,
        json.dumps(PAUSE_RUNTIME.as_json(), sort_keys=True),
    )
    archive = archive_path("pause", key)
    reused = _reuse("pause", archive, began)
    if reused is not None:
        return reused
    require(["gcc", "libc.a"], "compiling the pause image", root=False)
    log(f"pause: compiling {source} statically")
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / "pause"
        proc = subprocess.run(
            ["gcc", *cflags, "-o", str(binary), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ImagesError(f"gcc could not compile {source}:\n{proc.stderr[-3000:]}")
        write_pause_archive(binary.read_bytes(), archive, ref)
    return _record("pause", archive, key, began)


# --- the local base --------------------------------------------------------------------------


@_locked
def ensure_base() -> Image:
    """The local Python base (`localcluster.local/python-base:bookworm-<hash>`): mmdebstrap
    from the host's Debian mirror the first time (1-2 minutes), then reused. Cached by the
    mmdebstrap command, the host's extra CA certificates and the image config; package updates
    alone do not rebuild it (remove the archive to refresh it)."""
    began = time.monotonic()
    sources = debianbase.host_debian_sources()
    certificates = debianbase.host_ca_certificates()
    key = _hash(
        *debianbase.mmdebstrap_argv(sources, []),
        *(f"ca {p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}" for p in certificates),
        *(f"drop {path}" for path in debianbase.BASE_DROP),
        json.dumps(debianbase.BASE_RUNTIME.as_json(), sort_keys=True),
    )
    archive = archive_path("python-base", key)
    reused = _reuse("python-base", archive, began)
    if reused is not None:
        return reused
    require(["mmdebstrap"], "building the local base image")
    suite = debianbase.DEBIAN_SUITE
    log(f"python-base: mmdebstrap {suite} from {', '.join(sources) or 'the default mirror'}")
    ref = f"{LOCAL_REGISTRY}/python-base:{suite}-{key[:HASH_LENGTH]}"
    mmdebstrap_log = images_dir() / "logs" / "mmdebstrap.log"
    try:
        debianbase.write_base_archive(archive, ref, sources, certificates, mmdebstrap_log)
    except debianbase.MmdebstrapError as err:
        raise ImagesError(str(err)) from err
    return _record("python-base", archive, key, began)


# --- images composed without an engine: the base + files + a runtime config ------------------


def runtime_on(
    base: Image, *, entrypoint: tuple[str, ...], user: str, working_dir: str = ""
) -> ociarchive.RuntimeConfig:
    """A runtime config that keeps the base's environment (PATH, the CA settings)."""
    env = tuple(ociarchive.read_archive(base.archive).config.get("config", {}).get("Env") or ())
    return ociarchive.RuntimeConfig(
        entrypoint=entrypoint, env=env, user=user, working_dir=working_dir
    )


def write_composed_archive(
    base_archive: Path,
    files: Sequence[ociarchive.LayerFile],
    out: Path,
    ref: str,
    runtime: ociarchive.RuntimeConfig,
) -> None:
    """The base's layers plus one holding `files`, written as an archive without an engine.

    Paths go under real folders of the base: Debian's `/bin` is a symlink to `usr/bin`, and a
    layer entry `bin/` would replace it with a folder (write `usr/bin/x` for `/bin/x`)."""
    base = ociarchive.read_archive(base_archive)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        layers = []
        with tarfile.open(base_archive, mode="r:") as tar:
            for number, digest in enumerate(base.layer_digests):
                member = tar.extractfile(ociarchive.blob_path(digest))
                if member is None:
                    raise ImagesError(f"{base_archive} lacks layer {digest}")
                path = Path(scratch) / f"base{number}.tar"
                with path.open("wb") as copy:
                    shutil.copyfileobj(member, copy)
                layers.append(ociarchive.Layer.of(path))
        top = Path(scratch) / "files.tar"
        top.write_bytes(ociarchive.layer_tar(files))
        layers.append(ociarchive.Layer.of(top))
        ociarchive.write_archive(out, ref, layers, runtime)


def files_hash(files: Sequence[ociarchive.LayerFile]) -> str:
    """A digest of a layer's files: paths, modes and contents."""
    sha = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.path):
        sha.update(f"{item.path} {item.mode:o} {hashlib.sha256(item.data).hexdigest()}\n".encode())
    return sha.hexdigest()


@_locked
def ensure_composed(
    name: str,
    ref: str,
    base: Image,
    files: Sequence[ociarchive.LayerFile],
    runtime: ociarchive.RuntimeConfig,
) -> Image:
    """`ref`: the base plus one layer of `files`, with `runtime`; cached by all four (seconds to
    write: no engine, no package manager)."""
    began = time.monotonic()
    key = _hash(
        base.config_digest,
        files_hash(files),
        ref,
        json.dumps(runtime.as_json(), sort_keys=True),
    )
    archive = archive_path(name, key)
    reused = _reuse(name, archive, began)
    if reused is not None:
        return reused
    log(f"{name}: {len(files)} files on {base.ref}")
    write_composed_archive(base.archive, files, archive, ref, runtime)
    return _record(name, archive, key, began)


def ensure_seaweedfs(base: Image) -> Image:
    """`localcluster.local/seaweedfs:<version>`: the project's Debian base with `weed` (built
    from its Go module first if the cache lacks it), for an in-cluster S3 server
    (manifests/dev/seaweedfs). `weed` runs as an unprivileged user in `/data`, a mounted volume."""
    from localcluster.build import build
    from localcluster.versions import SEAWEEDFS_VERSION

    weed = build(["weed"])["weed"]
    files = [
        ociarchive.LayerFile("usr/local/bin/weed", weed.read_bytes()),
        ociarchive.LayerFile("data/.keep", b"", mode=0o644),
    ]
    runtime = runtime_on(
        base, entrypoint=("/usr/local/bin/weed",), user="65532:65532", working_dir="/data"
    )
    ref = f"{LOCAL_REGISTRY}/seaweedfs:{SEAWEEDFS_VERSION}"
    return ensure_composed("seaweedfs", ref, base, files, runtime)


def ensure_base_in_engine(engine: Engine, base: Image) -> None:
    """`docker load` the base archive unless the engine has that image (same id)."""
    if engine.image_id(base.ref) != base.config_digest:
        log(f"python-base: loading {base.archive.name} into the build engine")
        engine.docker("load", "--quiet", "--input", str(base.archive))


def ensure_rust_builder(engine: Engine, base: Image, ref: str) -> None:
    """The local Rust builder image `ref` in the engine, built from the host's toolchain."""
    if engine.image_id(ref) is not None:
        return
    began = time.monotonic()
    toolchain = rustbuilder.host_rust_toolchain()
    log(f"rust-builder: {toolchain.name} into {ref}")
    context = images_dir() / "rust-builder-context"
    try:
        rustbuilder.write_context(toolchain, base.ref, context)
        engine.docker(
            "build",
            "--network=host",
            "--force-rm",
            f"--tag={ref}",
            str(context),
            log=images_dir() / "logs" / "rust-builder.log",
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    log(f"rust-builder: built in {time.monotonic() - began:.0f} s")


# --- images from Dockerfiles -----------------------------------------------------------------


def repo_root() -> Path:
    """The repository this package runs from (tools/localcluster/ -> the root)."""
    return Path(__file__).resolve().parents[2]


def project_version(root: Path | None = None) -> str:
    """The project's one version (`version` in pyproject.toml): the image tags carry it."""
    pyproject = (root or repo_root()) / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as err:
        raise ImagesError(f"cannot read the project version from {pyproject}: {err}") from err


@dataclass(frozen=True)
class ImageSpec:
    """An image built from a Dockerfile: short name, tag, Dockerfile, build context, and the
    stage to build (`--target`; None: the last)."""

    name: str
    ref: str
    dockerfile: Path
    context: Path
    target: str | None = None


#: The project images: name, Dockerfile, target. vod-stream-packaging is the streaming image
#: plus ffmpeg (the VideoAsset Jobs run it); built after vod-stream, it reuses its layers.
PROJECT_IMAGES = (
    ("vod-stream", "streaming/Dockerfile", "serving"),
    ("vod-stream-packaging", "streaming/Dockerfile", "packaging"),
    ("vod-operator", "operator/Dockerfile", None),
)


def project_images(root: Path | None = None) -> list[ImageSpec]:
    """vod-stream, vod-stream-packaging and vod-operator, tagged as `make image` tags them."""
    root = root or repo_root()
    version = project_version(root)
    return [
        ImageSpec(name, f"{IMAGE_REGISTRY}/{name}:{version}", root / dockerfile, root, target)
        for name, dockerfile, target in PROJECT_IMAGES
    ]


@dataclass(frozen=True)
class Plan:
    """What building one spec takes: its build arguments, content hash and archive."""

    spec: ImageSpec
    build_args: dict[str, str]
    key: str
    archive: Path


def plan(spec: ImageSpec, base: Image, rust_ref: str | None = None) -> Plan:
    """Only the build arguments the Dockerfile declares are passed: PYTHON_IMAGE (the local
    base) and, when declared, RUST_IMAGE (`rust_ref`, needed then)."""
    text = spec.dockerfile.read_text()
    offered = {"PYTHON_IMAGE": base.ref}
    if "RUST_IMAGE" in dockerfiles.declared_args(text):
        if rust_ref is None:
            raise ImagesError(f"{spec.dockerfile} declares RUST_IMAGE: a Rust builder is needed")
        offered["RUST_IMAGE"] = rust_ref
    build_args = dockerfiles.build_args_for(text, offered)
    extra = [spec.ref, f"base {base.config_digest}"]
    if spec.target is not None:
        extra.append(f"target {spec.target}")
    key = dockerfiles.input_hash(spec.context, spec.dockerfile, build_args, extra=extra)
    return Plan(spec, build_args, key, archive_path(spec.name, key))


def _build_and_save(engine: Engine, job: Plan) -> None:
    spec = job.spec
    args = ["build", "--network=host", "--force-rm", f"--tag={spec.ref}"]
    args.append(f"--file={spec.dockerfile}")
    if spec.target is not None:
        args.append(f"--target={spec.target}")
    for name, value in sorted(job.build_args.items()):
        args.append(f"--build-arg={name}={value}")
    build_log = images_dir() / "logs" / f"{spec.name}.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    build_log.write_text("")
    began = time.monotonic()
    engine.docker(*args, str(spec.context), log=build_log)
    built = time.monotonic()
    partial = job.archive.with_name(f".{job.archive.name}.partial")
    engine.docker("save", f"--output={partial}", spec.ref)
    partial.chmod(0o644)
    partial.replace(job.archive)
    saved = time.monotonic()
    log(f"{spec.name}: docker build {built - began:.0f} s, docker save {saved - built:.0f} s")


def _rust_ref_if_needed(specs: Sequence[ImageSpec], base: Image) -> str | None:
    for spec in specs:
        if "RUST_IMAGE" in dockerfiles.declared_args(spec.dockerfile.read_text()):
            toolchain = rustbuilder.host_rust_toolchain()
            return rustbuilder.builder_ref(base.ref, base.config_digest, toolchain)
    return None


@_locked
def ensure_images(specs: Sequence[ImageSpec], base: Image | None = None) -> list[Image]:
    """Each spec's archive: reused when its content hash matches, else built in the private
    engine (started only then and stopped afterwards)."""
    base = base or ensure_base()
    rust_ref = _rust_ref_if_needed(specs, base)
    results: dict[str, Image] = {}
    pending: list[Plan] = []
    for spec in specs:
        began = time.monotonic()
        job = plan(spec, base, rust_ref)
        reused = _reuse(spec.name, job.archive, began)
        if reused is not None:
            results[spec.name] = reused
        else:
            pending.append(job)
    if pending:
        require(["dockerd", "docker", "runc"], "building images in a private Docker engine")
        began = time.monotonic()
        with private_engine(engine_dir()) as engine:
            log(f"private dockerd up in {time.monotonic() - began:.1f} s at {engine.socket}")
            ensure_base_in_engine(engine, base)
            for job in pending:
                started = time.monotonic()
                if rust_ref is not None and "RUST_IMAGE" in job.build_args:
                    ensure_rust_builder(engine, base, rust_ref)
                log(f"{job.spec.name}: building {job.spec.ref} from {job.spec.dockerfile}")
                _build_and_save(engine, job)
                results[job.spec.name] = _record(job.spec.name, job.archive, job.key, started)
            engine.docker("image", "prune", "--force")  # earlier builds' untagged images
    return [results[spec.name] for spec in specs]


def ensure_project_images(root: Path | None = None) -> list[Image]:
    """The project images from the repository at `root` (default: this checkout)."""
    return ensure_images(project_images(root))


@_locked
def ensure_all(root: Path | None = None, s3_server: bool = True) -> list[Image]:
    """What a real node needs: the pause image, then the base and the project images, and
    (`s3_server`) the in-cluster S3 server (SeaweedFS) the cluster tests run; `make demo` does
    without it (building `weed` is minutes cold)."""
    pause = ensure_pause()
    base = ensure_base()
    built = [pause, base, *ensure_images(project_images(root), base)]
    return [*built, ensure_seaweedfs(base)] if s3_server else built


def load_all(images: Sequence[Image], containerd_address: Path | str) -> list[Loaded]:
    """`load` every image a node runs (all but the build-only base)."""
    return [
        load(image.archive, containerd_address) for image in images if image.name != "python-base"
    ]


__all__ = [
    "IMAGE_REGISTRY",
    "PAUSE_IMAGE",
    "Image",
    "ImageSpec",
    "ImagesError",
    "Loaded",
    "ensure_all",
    "ensure_base",
    "ensure_composed",
    "ensure_images",
    "ensure_pause",
    "ensure_project_images",
    "ensure_seaweedfs",
    "load",
    "load_all",
    "project_images",
]
