"""The monitoring stack's images, composed on the project's Debian base without any engine.

- `localcluster.local/prometheus-operator:<ver>` and `.../prometheus-config-reloader:<ver>`: one
  binary each, built from the Prometheus Operator's Go module (versions.py, build.py).
- `localcluster.local/prometheus:v2.42.0`: Debian's `prometheus` package as installed on this
  host (`/usr/bin/prometheus` and the classic web UI under `/usr/share/prometheus/web`, which
  Debian's build reads from there), so the UI works: Prometheus' Go module carries no UI assets.

Each is `images.ensure_composed`: the base plus one layer of files and a runtime config, cached
by their hash (seconds to write).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from localcluster import images, ociarchive
from localcluster.images import LOCAL_REGISTRY, Image, ImagesError
from localcluster.requirements import require
from localcluster.versions import PROMETHEUS_OPERATOR_VERSION, PROMETHEUS_VERSION, version_fits

#: As upstream's images: nobody.
NOBODY = "65534:65534"
OPERATOR_IMAGE = f"{LOCAL_REGISTRY}/prometheus-operator:{PROMETHEUS_OPERATOR_VERSION}"
RELOADER_IMAGE = f"{LOCAL_REGISTRY}/prometheus-config-reloader:{PROMETHEUS_OPERATOR_VERSION}"
PROMETHEUS_IMAGE = f"{LOCAL_REGISTRY}/prometheus:{PROMETHEUS_VERSION}"
#: The operator runs the reloader as `/bin/prometheus-config-reloader` (its `command`); Debian's
#: `/bin` is a symlink to `usr/bin`, so the file goes there.
RELOADER_PATH = "/usr/bin/prometheus-config-reloader"
OPERATOR_PATH = "/usr/bin/prometheus-operator"
PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
PROMETHEUS_WEB = Path("/usr/share/prometheus/web")
#: Debian links the UI's JavaScript libraries from their own packages; moment-timezone's
#: folder also holds 212 MB of zone data the UI never loads (it loads the `-with-data` file).
UI_SKIP = ("static/moment-timezone/data",)


def tree_files(
    root: Path, prefix: str, skip: tuple[str, ...] = (), mode: int = 0o644
) -> list[ociarchive.LayerFile]:
    """Every file under `root` (symlinks followed, so the layer holds their content) as layer
    files under `prefix`, leaving out the folders `skip` (relative to `root`)."""
    found: list[ociarchive.LayerFile] = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        relative = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if str(relative / d) not in skip)
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file():
                layer_path = f"{prefix.strip('/')}/{(relative / name).as_posix()}"
                found.append(ociarchive.LayerFile(layer_path, path.read_bytes(), mode=mode))
    return found


def binary_file(source: Path, target: str) -> ociarchive.LayerFile:
    return ociarchive.LayerFile(target.lstrip("/"), source.read_bytes(), mode=0o755)


def host_prometheus_version(binary: Path = PROMETHEUS_BINARY) -> str:
    """What the host's Prometheus reports (`prometheus, version 2.42.0+ds ...`), or ''."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ""
    return proc.stdout + proc.stderr


def ensure_prometheus(base: Image) -> Image:
    """Debian's Prometheus (binary and web UI) on the base, entrypoint `/usr/bin/prometheus`
    (the operator passes the arguments)."""
    require(["prometheus"], "composing the Prometheus image", root=False)
    found = host_prometheus_version()
    if not version_fits(found, PROMETHEUS_VERSION):
        raise ImagesError(
            f"the host's {PROMETHEUS_BINARY} reports {found.splitlines()[:1]}, not "
            f"{PROMETHEUS_VERSION}: install Debian bookworm's `prometheus` package"
        )
    files = [
        binary_file(PROMETHEUS_BINARY, str(PROMETHEUS_BINARY)),
        *tree_files(PROMETHEUS_WEB, str(PROMETHEUS_WEB), UI_SKIP),
    ]
    runtime = images.runtime_on(
        base, entrypoint=(str(PROMETHEUS_BINARY),), user=NOBODY, working_dir="/prometheus"
    )
    return images.ensure_composed("prometheus", PROMETHEUS_IMAGE, base, files, runtime)


def ensure_operator_images(base: Image) -> list[Image]:
    """The Prometheus Operator and its config reloader (built from the Go module if missing)."""
    from localcluster.build import build

    built = build(["prometheus-operator", "prometheus-config-reloader"])
    made = []
    for name, ref, path in (
        ("prometheus-operator", OPERATOR_IMAGE, OPERATOR_PATH),
        ("prometheus-config-reloader", RELOADER_IMAGE, RELOADER_PATH),
    ):
        runtime = images.runtime_on(base, entrypoint=(path,), user=NOBODY)
        files = [binary_file(built[name], path)]
        made.append(images.ensure_composed(name, ref, base, files, runtime))
    return made


def ensure_stack_images() -> list[Image]:
    """All three, on the project's base (built first if missing)."""
    with images.building():
        base = images.ensure_base()
        return [*ensure_operator_images(base), ensure_prometheus(base)]
