"""The project images, built offline from the unchanged Dockerfiles (slow the first time: the
`images` marker; afterwards the archives are reused by content hash).

Facts are read from the saved archives, no container is run: the image config carries the
Dockerfile's ENTRYPOINT/CMD/USER/EXPOSE, the archives import into a real containerd, and the
private build engine never answered on the default Docker socket and left nothing behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
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
DOCKERFILES = {"vod-stream": "streaming/Dockerfile", "vod-operator": "operator/Dockerfile"}


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


def final_stage(path: Path) -> dict[str, list[dockerfile.Command]]:
    commands = dockerfile.parse_file(str(path))
    last_from = max(i for i, c in enumerate(commands) if c.cmd.upper() == "FROM")
    stage: dict[str, list[dockerfile.Command]] = {}
    for command in commands[last_from:]:
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
    stage = final_stage(ROOT / DOCKERFILES[name])
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
