"""The project images, built offline from the unchanged Dockerfiles (slow the first time: the
`images` marker; afterwards the archives are reused by content hash).

Facts are read from the saved archives, no container is run: the image config carries the
Dockerfile's ENTRYPOINT/CMD/USER/EXPOSE, the archives import into a real containerd, and the
private build engine never answered on the default Docker socket and left nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import dockerfile  # type: ignore[import-not-found]  # BuildKit's parser, no type stubs
import pytest

from localcluster import engine, imageload, images, ociarchive
from localcluster.debianbase import SYSTEM_PATH
from localcluster.paths import engine_dir, images_dir
from tests.component.containerd import private_containerd

pytestmark = [pytest.mark.component, pytest.mark.images, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
#: Each image's Dockerfile and the stage whose ENTRYPOINT/CMD/USER/EXPOSE it carries (None: the
#: last): the packaging image is the serving stage plus ffmpeg, with the same command and user.
DOCKERFILES = {
    "vod-stream": ("streaming/Dockerfile", "serving"),
    "vod-stream-packaging": ("streaming/Dockerfile", "serving"),
    "vod-operator": ("operator/Dockerfile", None),
}


@dataclass(frozen=True)
class Built:
    #: hard links to the archives (another checkout sharing the cache may prune the originals)
    linked: dict[str, images.Image]
    warm: list[images.Image]  # a second run right after the first
    warm_seconds: float


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Built:
    keep = tmp_path_factory.mktemp("archives")
    with images.building():  # no other builder between the two runs
        first = images.ensure_project_images(ROOT)
        began = time.monotonic()
        warm = images.ensure_project_images(ROOT)
        warm_seconds = time.monotonic() - began
        linked = {}
        for image in first:
            archive = keep / image.archive.name
            try:
                os.link(image.archive, archive)
            except OSError:  # another file system
                shutil.copy(image.archive, archive)
            shutil.copy(image.archive.with_suffix(".json"), archive.with_suffix(".json"))
            linked[image.name] = dataclasses.replace(image, archive=archive)
    return Built(linked, warm, warm_seconds)


@pytest.fixture(scope="module")
def built(built_run: Built) -> dict[str, images.Image]:
    return built_run.linked


def final_stage(path: Path, name: str | None = None) -> dict[str, list[dockerfile.Command]]:
    """The instructions of stage `name` (None: the last stage), by keyword."""
    commands = dockerfile.parse_file(str(path))
    starts = [i for i, c in enumerate(commands) if c.cmd.upper() == "FROM"]
    if name is None:
        start = starts[-1]
    else:
        start = next(
            i for i in starts if [w.lower() for w in commands[i].value[1:]] == ["as", name]
        )
    end = min([i for i in starts if i > start] or [len(commands)])
    stage: dict[str, list[dockerfile.Command]] = {}
    for command in commands[start:end]:
        stage.setdefault(command.cmd.upper(), []).append(command)
    return stage


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_config_is_the_dockerfiles(built: dict[str, images.Image], name: str) -> None:
    image = built[name]
    assert image.ref == f"{images.IMAGE_REGISTRY}/{name}:{images.project_version(ROOT)}"
    assert ociarchive.verify_archive(image.archive) == []
    info = ociarchive.read_archive(image.archive)
    assert info.refs == (image.ref,)
    assert info.config_digest == image.config_digest
    config = info.config["config"]
    dockerfile_path, stage_name = DOCKERFILES[name]
    stage = final_stage(ROOT / dockerfile_path, stage_name)
    assert config["Entrypoint"] == list(stage["ENTRYPOINT"][-1].value)
    if "CMD" in stage:
        assert config["Cmd"] == list(stage["CMD"][-1].value)
    else:  # ENTRYPOINT resets the base's CMD
        assert not config.get("Cmd")
    assert config["User"] == "65532:65532" == stage["USER"][-1].value[0]
    for port in stage["EXPOSE"][-1].value:
        assert f"{port}/tcp" in config["ExposedPorts"]
    assert "PATH=/opt/venv/bin:" + SYSTEM_PATH in config["Env"]


def test_build_engine_left_nothing_behind(built: dict[str, images.Image]) -> None:
    assert not engine.default_socket_answers()
    with images.builder_lock():  # not while another checkout sharing the cache builds
        assert not engine.engine_answers(engine_dir() / "docker.sock")
        assert engine.cgroup_dirs() == []
        assert engine.own_processes(str(engine_dir())) == []
        assert not (engine_dir() / "host-leftovers.json").exists()  # dockerd's host files gone
        assert str(engine_dir()) not in Path("/proc/self/mountinfo").read_text()


def test_warm_run_reuses_the_archives_without_an_engine(built_run: Built) -> None:
    assert [(i.name, i.action, i.archive.name) for i in built_run.warm] == [
        (name, "reused", image.archive.name) for name, image in built_run.linked.items()
    ]
    assert built_run.warm_seconds < 10
    assert not (engine_dir() / "dockerd.pid").exists()


def test_archives_import_into_containerd(built: dict[str, images.Image]) -> None:
    with private_containerd() as socket:
        loaded = [imageload.load(image.archive, socket) for image in built.values()]
        listed = imageload.parse_image_list(
            imageload.ctr(socket, imageload.K8S_NAMESPACE, "images", "ls")
        )
        again = [imageload.load(image.archive, socket) for image in built.values()]
    assert [item.action for item in loaded] == ["imported"] * len(built)
    assert [item.action for item in again] == ["present"] * len(built)
    assert set(listed) == {image.ref for image in built.values()}
    for item in loaded:
        print(f"{item.ref}: imported in {item.seconds:.1f} s")


#: Uncompressed size bounds (MB): the serving and operator images carry only their own
#: distribution. Measured on the local Debian base (129 MB, no docs, man pages or locales, as
#: python:3.11-slim's ~125 MB): vod-stream 186, vod-operator 182 (the Kubernetes client alone is
#: 34 MB of it). 200 for the operator is issue 19's goal.
SIZE_LIMITS_MB = {"vod-stream": 210, "vod-operator": 200}


def layer_files(archive: Path) -> tuple[int, set[str]]:
    """The uncompressed size of an image's layers and every path they hold."""
    size, paths = 0, set[str]()
    with tarfile.open(archive, mode="r:") as outer:
        names = {name.removeprefix("./") for name in outer.getnames()}
        if "manifest.json" in names:  # docker save's layout: the layers' tar files in order
            manifest = outer.extractfile("manifest.json")
            assert manifest is not None
            layers = list(json.load(manifest)[0]["Layers"])
        else:
            info = ociarchive.read_archive(archive)
            layers = [ociarchive.blob_path(digest) for digest in info.layer_digests]
        for layer_name in layers:
            member = outer.getmember(layer_name)
            size += member.size
            blob = outer.extractfile(member)
            assert blob is not None
            with tarfile.open(fileobj=blob, mode="r:*") as layer:
                paths.update(name.removeprefix("./") for name in layer.getnames())
    return size, paths


def test_images_are_lean(built: dict[str, images.Image]) -> None:
    """ffmpeg only in the packaging image; the operator image has no streaming server."""
    found = {name: layer_files(image.archive) for name, image in built.items()}
    for name, (size, _) in found.items():
        print(f"{name}: {size / 1e6:.0f} MB uncompressed")
    for name, limit in SIZE_LIMITS_MB.items():
        assert found[name][0] <= limit * 1e6, name
    for name, (_, paths) in found.items():  # the base's dpkg path filters held (debianbase)
        assert not any(p.startswith(("usr/share/locale/", "usr/share/man/")) for p in paths), name
    assert "usr/bin/ffmpeg" not in found["vod-stream"][1]
    assert {"usr/bin/ffmpeg", "usr/bin/ffprobe"} <= found["vod-stream-packaging"][1]
    operator_files = found["vod-operator"][1]
    # (aiohttp stays: kopf is built on it)
    forbidden = ("vod_stream", "obstore", "cryptography", "jwt", "localcluster", "vod_delivery")
    for package in forbidden:
        assert not any(f"/site-packages/{package}/" in path for path in operator_files), package


def test_rust_builder_compiles_with_cargo(tmp_path: Path) -> None:
    """A Dockerfile declaring RUST_IMAGE (as streaming/Dockerfile will) gets the local Rust
    builder: cargo builds a crate offline, the binary runs in the Python base's final stage."""
    crate = tmp_path / "hello"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2021"\n'
    )
    nonce = f"{time.time_ns()}"  # a new crate each run: cargo really compiles, no layer cache
    (crate / "src" / "main.rs").write_text(
        f'fn main() {{ println!("hello from cargo {nonce}"); }}\n'
    )
    (tmp_path / "Dockerfile").write_text(
        "ARG PYTHON_IMAGE=python:3.11-slim-bookworm\n"
        "ARG RUST_IMAGE=rust:1-slim-bookworm\n"
        "FROM ${RUST_IMAGE} AS build\n"
        "WORKDIR /src\n"
        "COPY hello hello\n"
        "RUN cd hello && cargo build --release --offline && ./target/release/hello\n"
        "FROM ${PYTHON_IMAGE}\n"
        "COPY --from=build /src/hello/target/release/hello /usr/local/bin/hello\n"
        "RUN hello\n"
        'ENTRYPOINT ["hello"]\n'
    )
    spec = images.ImageSpec(
        "rust-smoke", "localcluster.local/rust-smoke:test", tmp_path / "Dockerfile", tmp_path
    )
    (image,) = images.ensure_images([spec])
    try:
        info = ociarchive.read_archive(image.archive)
        assert info.config["config"]["Entrypoint"] == ["hello"]
        log = (images_dir() / "logs" / "rust-smoke.log").read_text()
        assert f"hello from cargo {nonce}" in log
        assert "--build-arg=RUST_IMAGE=localcluster.local/rust-builder:" in log
    finally:
        image.archive.unlink(missing_ok=True)
        image.archive.with_suffix(".json").unlink(missing_ok=True)
