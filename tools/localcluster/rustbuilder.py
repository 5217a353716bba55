"""A local stand-in for `rust:<version>-slim-bookworm`, for Dockerfiles with `ARG RUST_IMAGE`.

Debian bookworm's rustc is too old and rustup cannot download offline, so the builder image is
the local base plus the host's own default rustup toolchain (copied in through a small build
context, docs left out) in the official image's layout: RUSTUP_HOME=/usr/local/rustup,
CARGO_HOME=/usr/local/cargo, cargo/rustc on PATH through rustup's proxies, gcc and libc6-dev
for linking. It is built in the private engine only when a Dockerfile declares RUST_IMAGE.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from localcluster.debianbase import DEBIAN_SUITE, SYSTEM_PATH

RUST_REPOSITORY = "localcluster.local/rust-builder"


class RustToolchainError(RuntimeError):
    pass


@dataclass(frozen=True)
class RustToolchain:
    """The host's default rustup toolchain."""

    name: str  # e.g. stable-x86_64-unknown-linux-gnu
    directory: Path  # <RUSTUP_HOME>/toolchains/<name>, symlinks resolved
    cargo_bin: Path  # <CARGO_HOME>/bin: rustup and its proxies (cargo, rustc, ...)
    #: `rustc -vV` and `cargo -V` output: what identifies the toolchain in the image's hash
    version: str

    @property
    def release(self) -> str:
        for line in self.version.splitlines():
            if line.startswith("release:"):
                return line.partition(":")[2].strip()
        return "unknown"


def host_rust_toolchain() -> RustToolchain:
    """The default toolchain of the host's rustup (RUSTUP_HOME and CARGO_HOME honoured)."""
    rustup_home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    settings = rustup_home / "settings.toml"
    if not settings.is_file():
        raise RustToolchainError(
            f"a Rust builder image copies the host's rustup toolchain, but there is no {settings} "
            "(install Rust with rustup: https://rustup.rs)"
        )
    name = str(tomllib.loads(settings.read_text()).get("default_toolchain", ""))
    directory = (rustup_home / "toolchains" / name).resolve()
    if not name or not (directory / "bin" / "cargo").is_file():
        raise RustToolchainError(f"rustup's default toolchain {name!r} has no bin/cargo")
    if not (cargo_home / "bin").is_dir():
        raise RustToolchainError(f"no {cargo_home / 'bin'} (rustup's proxies)")
    version = ""
    for tool, flag in (("rustc", "-vV"), ("cargo", "-V")):
        version += subprocess.run(
            [str(directory / "bin" / tool), flag], capture_output=True, text=True, check=False
        ).stdout
    return RustToolchain(name, directory, cargo_home / "bin", version)


def builder_dockerfile(base_ref: str, toolchain: RustToolchain) -> str:
    """The builder's Dockerfile (its context is `write_context`'s folder)."""
    return f"""\
FROM {base_ref}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:{SYSTEM_PATH} \\
    RUST_VERSION={toolchain.release}
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN cargo --version && rustc --version
"""


def builder_ref(base_ref: str, base_digest: str, toolchain: RustToolchain) -> str:
    """The builder's tag: the Rust release and a hash of everything it is made of."""
    sha = hashlib.sha256()
    for part in (
        base_digest,
        toolchain.name,
        toolchain.version,
        builder_dockerfile(base_ref, toolchain),
    ):
        sha.update(part.encode() + b"\n")
    return f"{RUST_REPOSITORY}:{toolchain.release}-{DEBIAN_SUITE}-{sha.hexdigest()[:16]}"


def _link_or_copy(source: str, target: str) -> None:
    """Hard link (same file system: no copy of ~600 MB), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _skip_docs(directory: str, names: list[str]) -> list[str]:
    return ["doc"] if Path(directory).name == "share" and "doc" in names else []


def write_context(toolchain: RustToolchain, base_ref: str, folder: Path) -> Path:
    """The builder's build context at `folder`: Dockerfile, rustup/ (the toolchain and a
    settings.toml making it the default) and cargo/bin (rustup's proxies)."""
    if folder.exists():
        shutil.rmtree(folder)
    toolchains = folder / "rustup" / "toolchains"
    toolchains.mkdir(parents=True)
    shutil.copytree(
        toolchain.directory,
        toolchains / toolchain.name,
        symlinks=True,
        copy_function=_link_or_copy,
        ignore=_skip_docs,
    )
    (folder / "rustup" / "settings.toml").write_text(
        f'version = "12"\ndefault_toolchain = "{toolchain.name}"\nprofile = "minimal"\n'
        'auto_self_update = "disable"\n'
    )
    shutil.copytree(
        toolchain.cargo_bin, folder / "cargo" / "bin", symlinks=True, copy_function=_link_or_copy
    )
    (folder / "Dockerfile").write_text(builder_dockerfile(base_ref, toolchain))
    return folder
