"""Build the pinned binaries from Go modules into the cache (`python -m localcluster build`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from localcluster import binaries
from localcluster.gomod import wrapper_edits
from localcluster.paths import bin_dir, build_dir, cache_root, exclusive, kwok_stages
from localcluster.versions import COMPONENTS, Component


def log(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def go_env() -> dict[str, str]:
    """Environment for every `go` call: the machine's toolchain only, static binaries."""
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"})
    return env


#: The oldest Go that builds every pinned component (kwok v0.8.0 declares go 1.26).
MIN_GO = (1, 26)
_GO_VERSION = re.compile(r"go(\d+)\.(\d+)")
#: How often a long `go` step says it is still at work.
HEARTBEAT_SECONDS = 60.0


def go(*args: str, cwd: Path, heartbeat: str | None = None) -> str:
    """Run `go args...` in `cwd`; return stdout, raise with stderr on failure.

    With `heartbeat`, a line naming it is logged every HEARTBEAT_SECONDS while go runs (a first
    build takes minutes and is otherwise silent).
    """
    proc = subprocess.Popen(
        ["go", *args],
        cwd=cwd,
        env=go_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    began = time.monotonic()
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=HEARTBEAT_SECONDS if heartbeat else None)
            break
        except subprocess.TimeoutExpired:
            log(f"{heartbeat}: still at work ({time.monotonic() - began:.0f} s)")
    if proc.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed in {cwd}:\n{stderr[-4000:]}")
    return stdout


def go_version_problem(version_output: str | None) -> str | None:
    """Why the machine's Go cannot build the pinned components (None: it can)."""
    if version_output is None:
        return "no `go` on PATH"
    match = _GO_VERSION.search(version_output)
    if match is None:
        return f"cannot read the Go version from {version_output.strip()!r}"
    if (int(match[1]), int(match[2])) < MIN_GO:
        return f"{version_output.strip()} is older than go{MIN_GO[0]}.{MIN_GO[1]}"
    return None


def require_go() -> None:
    """Fail with a clear message when the Go toolchain is missing or too old."""
    try:
        out: str | None = subprocess.run(
            ["go", "env", "GOVERSION"], env=go_env(), capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        out = None
    problem = go_version_problem(out)
    if problem is not None:
        raise RuntimeError(
            f"building the local control plane needs Go >= {MIN_GO[0]}.{MIN_GO[1]}: {problem}. "
            "Install Go (https://go.dev/dl/), or put fitting binaries on PATH or in "
            "KUBEBUILDER_ASSETS."
        )


def download(component: Component, workdir: Path) -> dict[str, str]:
    """`go mod download -json module@version`: where its go.mod (GoMod) and files (Dir) are."""
    spec = f"{component.module}@{component.version}"
    info: dict[str, str] = json.loads(go("mod", "download", "-json", spec, cwd=workdir))
    return info


def module_dir(component: Component) -> Path:
    """The folder of the pinned module's files (Go downloads it once into its module cache)."""
    workdir = build_dir(component)
    workdir.mkdir(parents=True, exist_ok=True)
    return Path(download(component, workdir)["Dir"])


def prepare_module(component: Component) -> Path:
    """A throwaway module requiring `component.module` at its pinned version (idempotent)."""
    workdir = build_dir(component)
    stamp = workdir / ".prepared"
    if stamp.is_file():
        return workdir
    workdir.mkdir(parents=True, exist_ok=True)
    for leftover in ("go.mod", "go.sum"):
        (workdir / leftover).unlink(missing_ok=True)
    go("mod", "init", f"localcluster.build/{component.name}", cwd=workdir)
    go("mod", "edit", f"-require={component.module}@{component.version}", cwd=workdir)
    if component.replace_version is not None:
        info = download(component, workdir)
        modfile = json.loads(go("mod", "edit", "-json", info["GoMod"], cwd=workdir))
        edits = wrapper_edits(modfile, component.replace_version)
        log(f"{component.name}: {len(edits)} replace/exclude directives from its go.mod")
        if edits:
            go("mod", "edit", *edits, cwd=workdir)
    packages = [f"{package}@{component.version}" for package in component.binaries.values()]
    log(f"{component.name}: resolving {', '.join(packages)}")
    go("get", *packages, cwd=workdir, heartbeat=f"{component.name}: resolving")
    stamp.write_text(component.version + "\n")
    return workdir


def build_binary(component: Component, binary: str, workdir: Path) -> Path:
    """`go build` one main package into the versioned cache folder (atomically)."""
    target = bin_dir(component) / binary
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{binary}.partial")
    ldflags = " ".join(["-s", "-w", *component.ldflags])
    go(
        "build",
        "-trimpath",
        "-ldflags",
        ldflags,
        "-o",
        str(partial),
        component.binaries[binary],
        cwd=workdir,
        heartbeat=f"{binary}: building",
    )
    partial.replace(target)
    return target


#: kwok's stage sets (kustomize folders in its module) that make nodes Ready and pods Running.
KWOK_STAGE_SETS = ("kustomize/stage/node/fast", "kustomize/stage/pod/fast")


def write_kwok_stages(component: Component) -> Path:
    """Concatenate kwok's fast node and pod Stage files (from the pinned module) into the cache."""
    target = kwok_stages()
    if target.is_file():
        return target
    folder = module_dir(component)
    documents: list[str] = []
    for stage_set in KWOK_STAGE_SETS:
        kustomization = yaml.safe_load((folder / stage_set / "kustomization.yaml").read_text())
        for resource in kustomization["resources"]:
            documents.append((folder / stage_set / resource).read_text().strip() + "\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("---\n".join(documents))
    log(f"kwok: {len(documents)} stages -> {target}")
    return target


def build(selected: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Make sure every (selected) binary exists; build only the missing ones. Returns paths."""
    result: dict[str, Path] = {}
    for component in COMPONENTS:
        wanted = [b for b in component.binaries if selected is None or b in selected]
        if not wanted:
            continue
        with exclusive(build_dir(component).with_suffix(".lock")):
            result.update(_build_component(component, wanted, force))
    log(f"{len(result)} binaries ready (cache: {cache_root() / 'bin'})")
    return result


def _build_component(component: Component, wanted: list[str], force: bool) -> dict[str, Path]:
    """Locate or build `wanted` binaries of one component (under its lock)."""
    result: dict[str, Path] = {}
    found = {b: None if force else binaries.find(b) for b in wanted}
    for binary, path in found.items():
        if path is not None:
            result[binary] = path
            if path != binaries.cached(binary):
                log(f"{binary}: using {path} (version fits {component.version})")
    if component.name == "kwok":
        write_kwok_stages(component)
    missing = [b for b, path in found.items() if path is None]
    if not missing:
        return result
    require_go()
    started = time.monotonic()
    workdir = prepare_module(component)
    for binary in missing:
        log(f"{binary}: building {component.module}@{component.version} (first time: minutes)")
        begun = time.monotonic()
        result[binary] = build_binary(component, binary, workdir)
        log(f"{binary}: built in {time.monotonic() - begun:.0f} s -> {result[binary]}")
    log(f"{component.name}: done in {time.monotonic() - started:.0f} s")
    return result
