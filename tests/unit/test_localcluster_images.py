"""localcluster's image tooling, pure parts: the archive writer, Dockerfile reading, the content
hash with .dockerignore, APT sources, the missing-package message."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import dockerfile  # type: ignore[import-not-found]  # BuildKit's parser, no type stubs
import pytest

from localcluster import imageload, images, ociarchive, rustbuilder
from localcluster.debianbase import debian_sources, mmdebstrap_argv
from localcluster.dockerfiles import (
    IgnoreRules,
    build_args_for,
    context_files,
    copied_files,
    copy_sources,
    declared_args,
    input_hash,
    instructions,
    read_ignore_file,
)
from localcluster.requirements import missing_message

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


# --- the archive writer ----------------------------------------------------------------------


def _write_pause_like(tmp_path: Path, binary: bytes = b"\x7fELF fake pause") -> Path:
    out = tmp_path / "pause.tar"
    images.write_pause_archive(binary, out, "localcluster.local/pause:v1.0.0")
    return out


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_pause_archive_digests_are_consistent(tmp_path: Path) -> None:
    archive = _write_pause_like(tmp_path)
    assert ociarchive.verify_archive(archive) == []
    files = _members(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"][ociarchive.CONTAINERD_NAME] == (
        "localcluster.local/pause:v1.0.0"
    )
    assert descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest_bytes = files[ociarchive.blob_path(descriptor["digest"])]
    assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == descriptor["digest"]
    assert len(manifest_bytes) == descriptor["size"]
    manifest = json.loads(manifest_bytes)
    config_bytes = files[ociarchive.blob_path(manifest["config"]["digest"])]
    assert "sha256:" + hashlib.sha256(config_bytes).hexdigest() == manifest["config"]["digest"]
    config = json.loads(config_bytes)
    (layer,) = manifest["layers"]
    layer_bytes = files[ociarchive.blob_path(layer["digest"])]
    assert "sha256:" + hashlib.sha256(layer_bytes).hexdigest() == layer["digest"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]  # uncompressed: blob = diff_id
    assert config["config"] == {"Entrypoint": ["/pause"], "User": "65535:65535"}
    # The same blobs as a docker-archive, for `docker load`.
    (entry,) = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["localcluster.local/pause:v1.0.0"]
    assert entry["Config"] == ociarchive.blob_path(manifest["config"]["digest"])
    assert entry["Layers"] == [ociarchive.blob_path(layer["digest"])]


def test_pause_layer_holds_one_executable(tmp_path: Path) -> None:
    archive = _write_pause_like(tmp_path, b"binary")
    info = ociarchive.read_archive(archive)
    (layer_digest,) = info.layer_digests
    with tarfile.open(
        fileobj=io.BytesIO(_members(archive)[ociarchive.blob_path(layer_digest)])
    ) as t:
        (member,) = t.getmembers()
        assert (member.name, member.mode, member.uid, member.mtime) == ("pause", 0o755, 0, 0)
        assert t.extractfile(member).read() == b"binary"  # type: ignore[union-attr]


def test_archive_is_a_function_of_its_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write_pause_like(tmp_path / "a")
    second = _write_pause_like(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    other = _write_pause_like(tmp_path, b"another binary")
    assert ociarchive.read_archive(other).config_digest != (
        ociarchive.read_archive(first).config_digest
    )


def test_read_archive_names_image_and_config(tmp_path: Path) -> None:
    info = ociarchive.read_archive(_write_pause_like(tmp_path))
    assert info.refs == ("localcluster.local/pause:v1.0.0",)
    assert info.config["config"]["Entrypoint"] == ["/pause"]
    assert info.manifest_digest is not None


def test_verify_finds_a_tampered_blob(tmp_path: Path) -> None:
    archive = _write_pause_like(tmp_path)
    files = _members(archive)
    index = json.loads(files["index.json"])
    manifest = json.loads(files[ociarchive.blob_path(index["manifests"][0]["digest"])])
    layer_name = ociarchive.blob_path(manifest["layers"][0]["digest"])
    tampered = tmp_path / "tampered.tar"
    files[layer_name] = files[layer_name][:-1] + bytes([files[layer_name][-1] ^ 1])
    _write_tar(tampered, files)
    problems = ociarchive.verify_archive(tampered)
    assert problems
    assert layer_name in problems[0]


def test_read_and_verify_a_docker_save_archive(tmp_path: Path) -> None:
    """The docker-archive layout `docker save` (20.10) writes: <id>/layer.tar, <config>.json."""
    layer = ociarchive.layer_tar([ociarchive.LayerFile("hello", b"hi\n", 0o644)])
    diff_id = ociarchive.digest_bytes(layer)
    config = json.dumps({"config": {"User": "65532:65532"}, "rootfs": {"diff_ids": [diff_id]}})
    config_id = hashlib.sha256(config.encode()).hexdigest()
    archive = tmp_path / "saved.tar"
    files = {
        "abc/layer.tar": layer,
        f"{config_id}.json": config.encode(),
        "manifest.json": json.dumps(
            [{"Config": f"{config_id}.json", "RepoTags": ["x/y:1"], "Layers": ["abc/layer.tar"]}]
        ).encode(),
    }
    _write_tar(archive, files)
    read = ociarchive.read_archive(archive)
    assert (read.refs, read.config_digest, read.manifest_digest) == (
        ("x/y:1",),
        f"sha256:{config_id}",
        None,
    )
    assert ociarchive.verify_archive(archive) == []


def test_filtered_layer_drops_device_nodes_but_keeps_dev(tmp_path: Path) -> None:
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w") as tar:
        for name, kind in (("./dev/", tarfile.DIRTYPE), ("./dev/null", tarfile.CHRTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            tar.addfile(info)
        data = b"nameserver 1.1.1.1\n"
        for name in ("./etc/resolv.conf", "./etc/os-release"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source.seek(0)
    layer = ociarchive.filtered_layer(
        source, tmp_path / "layer.tar", drop=["dev", "etc/resolv.conf"], keep_directories=["dev"]
    )
    assert list(ociarchive.iter_members(layer.path)) == ["./dev", "./etc/os-release"]
    assert layer.digest == ociarchive.digest_file(layer.path)


# --- Dockerfiles -----------------------------------------------------------------------------

SAMPLE = """\
# syntax=docker/dockerfile:1
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUST_IMAGE=rust:1.95-slim-bookworm
FROM ${RUST_IMAGE} AS rust
# a comment inside the stage
COPY --chown=0:0 Cargo.toml Cargo.lock ./
COPY ["crates/vod", "crates/vod"]
RUN cargo build \\
    # a comment inside a continuation
    --release
FROM ${PYTHON_IMAGE} AS build
ARG EXTRA="two words" PLAIN
COPY pyproject.toml README.md ./
ADD https://example.com/file.tar.gz /tmp/
COPY --from=rust /src/target/release/vod /usr/local/bin/vod
"""


def test_instructions_join_continuations_and_drop_comments() -> None:
    parsed = instructions(SAMPLE)
    assert [i.keyword for i in parsed] == [
        "ARG", "ARG", "FROM", "COPY", "COPY", "RUN", "FROM", "ARG", "COPY", "ADD", "COPY",
    ]  # fmt: skip
    run = next(i for i in parsed if i.keyword == "RUN")
    assert run.value.split() == ["cargo", "build", "--release"]
    assert run.line == 8


def test_instructions_agree_with_buildkits_parser(tmp_path: Path) -> None:
    for path in (ROOT / "streaming" / "Dockerfile", ROOT / "operator" / "Dockerfile"):
        ours = [(i.keyword, i.line) for i in instructions(path.read_text())]
        theirs = [(c.cmd.upper(), c.start_line) for c in dockerfile.parse_file(str(path))]
        assert ours == theirs
    sample = tmp_path / "Dockerfile"
    sample.write_text(SAMPLE)
    assert [i.keyword for i in instructions(SAMPLE)] == [
        c.cmd.upper() for c in dockerfile.parse_file(str(sample))
    ]


def test_declared_args_global_and_per_stage() -> None:
    assert declared_args(SAMPLE) == {
        "PYTHON_IMAGE": "python:3.11-slim-bookworm",
        "RUST_IMAGE": "rust:1.95-slim-bookworm",
        "EXTRA": "two words",
        "PLAIN": None,
    }


def test_only_declared_build_args_are_passed() -> None:
    offered = {"PYTHON_IMAGE": "local/base:1", "RUST_IMAGE": "local/rust:1"}
    streaming = (ROOT / "streaming" / "Dockerfile").read_text()
    assert build_args_for(streaming, offered) == offered  # the data plane's Rust builder stage
    operator = (ROOT / "operator" / "Dockerfile").read_text()
    assert build_args_for(operator, offered) == {"PYTHON_IMAGE": "local/base:1"}
    assert build_args_for(SAMPLE, offered) == offered
    assert build_args_for("FROM scratch\n", offered) == {}


def test_copy_sources_leave_out_stages_urls_and_heredocs() -> None:
    assert copy_sources(SAMPLE) == [
        "Cargo.toml",
        "Cargo.lock",
        "crates/vod",
        "pyproject.toml",
        "README.md",
    ]
    assert copy_sources("FROM x\nCOPY <<EOF /a\nhi\nEOF\n") == []
    assert copy_sources("FROM x\nARG D=src\nCOPY $D /src\n") is None  # needs evaluation


def test_project_dockerfiles_copy_only_their_distribution() -> None:
    """Each image is built from its own distribution: its pyproject.toml and package (and, for
    the streaming one, the crate); no development tooling, no other product."""
    assert copy_sources((ROOT / "operator" / "Dockerfile").read_text()) == [
        "operator/pyproject.toml",
        "operator/vod_operator",
    ]
    assert copy_sources((ROOT / "streaming" / "Dockerfile").read_text()) == [
        "streaming/pyproject.toml",
        "streaming/setup.cfg",
        "streaming/vod_stream",
        "streaming/dataplane/Cargo.toml",
        "streaming/dataplane/Cargo.lock",
        "streaming/dataplane/src",
    ]


# --- .dockerignore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.md"], "README.md", True),
        (["*.md"], "docs/a.md", False),  # `*` does not cross directories
        (["**/*.md"], "docs/deep/a.md", True),
        (["**/*.md"], "a.md", True),
        (["docs"], "docs/deep/a.md", True),  # a parent directory matches
        (["docs/**"], "docs", False),
        (["docs/**"], "docs/a", True),
        (["**", "!src/**"], "src/a.py", False),
        (["**", "!src/**", "**/__pycache__"], "src/__pycache__/a.pyc", True),
        (["**", "!src/**", "**/*.py[cod]"], "src/a.pyc", True),
        (["**", "!src/**", "**/*.py[cod]"], "src/a.py", False),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["/top"], "top", True),
        (["!keep", "*"], "keep", True),  # the last matching pattern decides
        (["*", "!keep"], "keep", False),
        (["**foo"], "barfoo", True),  # a leading ** is a plain suffix, as in Docker
        (["dir/"], "dir/file", True),
    ],
)
def test_ignore_patterns(patterns: list[str], path: str, ignored: bool) -> None:
    rules = IgnoreRules(read_ignore_file("\n".join(patterns)))
    assert rules.ignored(path) is ignored


def test_ignore_file_comments_blanks_and_cleaning() -> None:
    text = "# comment\n\n  ./a/../b/  \n!/c\n/d\n"
    assert read_ignore_file(text) == ["b", "!c", "d"]


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_context_walk_respects_the_projects_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    _tree(
        tmp_path,
        {
            "pyproject.toml": "",
            "README.md": "",
            "Makefile": "",
            "streaming/pyproject.toml": "",
            "operator/pyproject.toml": "",
            "streaming/Dockerfile": "",
            "streaming/vod_stream/server.py": "",
            "streaming/vod_stream/__pycache__/server.cpython-311.pyc": "",
            "streaming/vod_stream/stale.pyc": "",
            "tests/unit/test_x.py": "",
            "tools/localcluster/images.py": "",
            "tools/bench/bench.py": "",
        },
    )
    # each distribution's pyproject.toml and sources; not the development package's
    assert list(context_files(tmp_path)) == [
        "operator/pyproject.toml",
        "streaming/Dockerfile",
        "streaming/pyproject.toml",
        "streaming/vod_stream/server.py",
    ]


def test_input_hash_follows_copied_files_only(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("**/__pycache__\n")
    _tree(tmp_path, {"app/main.py": "print(1)\n", "docs/guide.md": "", "Dockerfile": ""})
    dockerfile_path = tmp_path / "Dockerfile"
    dockerfile_path.write_text("FROM base\nCOPY app /app\n")

    def key(**args: str) -> str:
        return input_hash(tmp_path, dockerfile_path, args or {"PYTHON_IMAGE": "base:1"})

    first = key()
    assert key() == first
    (tmp_path / "docs" / "guide.md").write_text("not copied")
    assert key() == first
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "main.cpython-311.pyc").write_text("ignored")
    assert key() == first
    assert copied_files(tmp_path, ["app"]) == ["app", "app/main.py"]
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    second = key()
    assert second != first
    os.chmod(tmp_path / "app" / "main.py", 0o755)  # COPY keeps modes
    third = key()
    assert third != second
    assert key(PYTHON_IMAGE="base:2") != third  # another base
    (tmp_path / "app" / "new.py").write_text("")
    assert key() != third
    dockerfile_path.write_text("FROM base\nCOPY app /app\nUSER 1\n")
    assert key() != third


def test_copied_globs_stop_at_slashes(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.txt": "", "sub/b.txt": "", "c.md": ""})
    assert copied_files(tmp_path, ["*.txt"]) == ["a.txt"]
    assert copied_files(tmp_path, ["*/*.txt"]) == ["sub/b.txt"]
    assert copied_files(tmp_path, ["."]) == ["a.txt", "c.md", "sub", "sub/b.txt"]


# --- images: names, versions, plans ----------------------------------------------------------


def test_project_images_are_tagged_like_make_image() -> None:
    version = images.project_version(ROOT)
    makefile = (ROOT / "Makefile").read_text()
    assert "IMAGE_REGISTRY ?= " + images.IMAGE_REGISTRY in makefile
    assert [(s.name, s.ref) for s in images.project_images(ROOT)] == [
        ("vod-stream", f"ghcr.io/vod-operator/vod-stream:{version}"),
        ("vod-stream-packaging", f"ghcr.io/vod-operator/vod-stream-packaging:{version}"),
        ("vod-operator", f"ghcr.io/vod-operator/vod-operator:{version}"),
    ]
    for spec in images.project_images(ROOT):  # `make image` builds the same targets
        target = f" --target {spec.target}" if spec.target else ""
        assert f"-f {spec.dockerfile.relative_to(ROOT)}{target} -t" in makefile


def _base(ref: str = "localcluster.local/python-base:bookworm-1") -> images.Image:
    return images.Image("python-base", ref, Path("/x.tar"), "sha256:" + "0" * 64, "k", "reused", 0)


def test_plan_passes_rust_image_only_when_declared(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(SAMPLE)
    _tree(tmp_path, {"Cargo.toml": "", "Cargo.lock": "", "crates/vod/lib.rs": ""})
    _tree(tmp_path, {"pyproject.toml": "", "README.md": ""})
    spec = images.ImageSpec("x", "x:1", tmp_path / "Dockerfile", tmp_path)
    job = images.plan(spec, _base(), rust_ref="localcluster.local/rust-builder:1")
    assert job.build_args == {
        "PYTHON_IMAGE": "localcluster.local/python-base:bookworm-1",
        "RUST_IMAGE": "localcluster.local/rust-builder:1",
    }
    with pytest.raises(images.ImagesError, match="RUST_IMAGE"):
        images.plan(spec, _base())
    streaming, packaging, operator = images.project_images(ROOT)
    assert images.plan(streaming, _base(), rust_ref="r:1").build_args == {
        "PYTHON_IMAGE": "localcluster.local/python-base:bookworm-1",
        "RUST_IMAGE": "r:1",
    }
    assert images.plan(operator, _base(), rust_ref="r:1").build_args == {
        "PYTHON_IMAGE": "localcluster.local/python-base:bookworm-1"
    }
    assert (
        images.plan(operator, _base(), rust_ref="r:1").key
        != images.plan(operator, _base("b:2"), rust_ref="r:1").key
    )
    # one Dockerfile, two targets: two images, cached apart
    assert (streaming.target, packaging.target) == ("serving", "packaging")
    assert (
        images.plan(streaming, _base(), rust_ref="r:1").key
        != images.plan(packaging, _base(), rust_ref="r:1").key
    )


def test_pause_tag_and_flags() -> None:
    assert images.pause_tag("IMAGE = x\nTAG ?= 3.10.1\nREV = y\n") == "3.10.1"
    assert images.pause_cflags("3.10.1", "v1.36.3")[-1] == "-DVERSION=v3.10.1-v1.36.3"
    assert "-static" in images.pause_cflags("1", "v1")
    assert images.PAUSE_IMAGE.startswith("localcluster.local/pause:v1.")


# --- Debian sources, Rust builder, containerd listing ----------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
"""


def test_debian_sources_from_deb822_and_one_line() -> None:
    assert debian_sources([DEB822]) == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    one_line = (
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n"
    )
    assert debian_sources([one_line, "# deb http://x bookworm main\n"]) == [
        "deb http://mirror.example/debian bookworm main contrib"
    ]
    assert debian_sources(["Types: deb\nURIs: http://x\nSuites: bookworm\nEnabled: no\n"]) == []


def test_mmdebstrap_adds_the_host_cas_in_the_base_only() -> None:
    plain = mmdebstrap_argv(["deb http://m bookworm main"], [])
    assert plain[-3:] == ["bookworm", "-", "deb http://m bookworm main"]
    assert "--variant=minbase" in plain
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in plain  # no usrmerge, no perl
    assert "--include=ca-certificates,python3,python3-venv,python-is-python3" in plain
    assert not any("update-ca-certificates" in a for a in plain)
    # `option=value`: mmdebstrap's own extraction of the essential packages (coreutils, bash,
    # dpkg...) reads only that form; `path-exclude /x` reached dpkg alone (36 MB of locales/docs)
    paths = [a.removeprefix("--dpkgopt=") for a in plain if a.startswith("--dpkgopt=path-")]
    assert "path-exclude=/usr/share/locale/*" in paths
    assert "path-include=/usr/share/doc/*/copyright" in paths
    assert all(p.startswith(("path-exclude=/", "path-include=/")) for p in paths)
    with_ca = mmdebstrap_argv([], [Path("/usr/local/share/ca-certificates/proxy.crt")])
    assert any("copy-in '/usr/local/share/ca-certificates/proxy.crt'" in a for a in with_ca)
    assert '--customize-hook=chroot "$1" update-ca-certificates' in with_ca


def test_rust_builder_context(tmp_path: Path) -> None:
    toolchain_dir = tmp_path / "rustup" / "toolchains" / "stable-x86_64-unknown-linux-gnu"
    _tree(
        toolchain_dir, {"bin/cargo": "", "bin/rustc": "", "lib/librustc.so": "", "share/doc/x": ""}
    )
    (tmp_path / "cargo" / "bin").mkdir(parents=True)
    (tmp_path / "cargo" / "bin" / "rustup").write_text("")
    (tmp_path / "cargo" / "bin" / "cargo").symlink_to("rustup")
    toolchain = rustbuilder.RustToolchain(
        "stable-x86_64-unknown-linux-gnu",
        toolchain_dir,
        tmp_path / "cargo" / "bin",
        "rustc 1.95.0\nrelease: 1.95.0\ncargo 1.95.0\n",
    )
    context = rustbuilder.write_context(toolchain, "local/base:1", tmp_path / "context")
    copied = context / "rustup" / "toolchains" / toolchain.name
    assert (copied / "bin" / "cargo").is_file()
    assert (copied / "lib" / "librustc.so").is_file()
    assert not (copied / "share" / "doc").exists()
    assert os.readlink(context / "cargo" / "bin" / "cargo") == "rustup"
    assert (
        'default_toolchain = "stable-x86_64-unknown-linux-gnu"'
        in (context / "rustup" / "settings.toml").read_text()
    )
    text = (context / "Dockerfile").read_text()
    assert text.startswith("FROM local/base:1\n")
    assert "PATH=/usr/local/cargo/bin:" in text
    assert "RUST_VERSION=1.95.0" in text
    ref = rustbuilder.builder_ref("local/base:1", "sha256:1", toolchain)
    assert ref.startswith("localcluster.local/rust-builder:1.95.0-bookworm-")
    assert rustbuilder.builder_ref("local/base:1", "sha256:2", toolchain) != ref


def test_ctr_image_list_and_names() -> None:
    output = (
        "REF                         TYPE                                       DIGEST"
        + " " * 66
        + "SIZE      PLATFORMS   LABELS\n"
        "localcluster.local/pause:v1 application/vnd.oci.image.manifest.v1+json "
        "sha256:" + "a" * 64 + " 680.7 KiB linux/amd64 -\n"
    )
    assert imageload.parse_image_list(output) == {
        "localcluster.local/pause:v1": "sha256:" + "a" * 64
    }
    assert imageload.normalize_ref("x:1") == "docker.io/library/x:1"
    assert imageload.normalize_ref("me/x:1") == "docker.io/me/x:1"
    assert imageload.normalize_ref("ghcr.io/vod-operator/vod-stream:0.1.0") == (
        "ghcr.io/vod-operator/vod-stream:0.1.0"
    )
    assert imageload.normalize_ref("localhost/x:1") == "localhost/x:1"


# --- requirements ----------------------------------------------------------------------------


def test_missing_package_message_names_the_debian_packages() -> None:
    assert missing_message([], True, "building images") is None
    message = missing_message(["mmdebstrap", "dockerd", "docker"], True, "building images")
    assert message is not None
    assert message.startswith("building images needs")
    assert "apt-get install docker.io mmdebstrap`" in message
    assert "root" not in message.partition(":")[2]
    assert "run it as root" in (missing_message([], False, "building images") or "")
    assert "libc6-dev" in (missing_message(["libc.a"], True, "compiling") or "")


def test_cli_reports_a_missing_package_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No mmdebstrap on PATH (and an empty cache): one message, exit 1, no traceback."""
    from localcluster import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(images, "ensure_pause", lambda: _base("localcluster.local/pause:v1"))
    assert cli.main(["images"]) == 1
    err = capsys.readouterr().err
    assert "apt-get install mmdebstrap" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_prune_keeps_the_most_recently_used_archives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Checkouts sharing the cache keep their own archives (least recently used go first)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = images.images_dir()
    folder.mkdir(parents=True)
    made = []
    for age, key in enumerate(["a" * 16, "b" * 16, "c" * 16, "d" * 16]):
        archive = folder / f"vod-stream-{key}.tar"
        archive.write_bytes(b"")
        archive.with_suffix(".json").write_text("{}")
        os.utime(archive.with_suffix(".json"), (1000 - age, 1000 - age))
        made.append(archive)
    other = folder / f"vod-stream-extra-{'e' * 16}.tar"  # another image's name: untouched
    other.write_bytes(b"")
    assert images.prune("vod-stream") == [made[3]]
    assert not made[3].exists()
    assert not made[3].with_suffix(".json").exists()
    assert all(path.exists() for path in [*made[:3], other])
