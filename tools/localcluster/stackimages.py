"""The monitoring stack's images, composed on the project's Debian base without any engine.

- `localcluster.local/prometheus-operator:<ver>` and `.../prometheus-config-reloader:<ver>`: one
  binary each, built from the Prometheus Operator's Go module (versions.py, build.py).
- `localcluster.local/prometheus:<ver>`: Prometheus built from its Go module (versions.py). The
  module carries no UI assets (they are an npm build), so it serves the API and not the UI.
  Debian's `prometheus` package would bring the UI in seconds, but it is built without
  Kubernetes service discovery, which every configuration the operator writes uses.

- `localcluster.local/keda-operator:<ver>` and `.../keda-adapter:<ver>`: KEDA's operator and
  its external-metrics API server, built from KEDA's Go module (`ensure_keda_images`).

Each is `images.ensure_composed`: the base plus one layer holding the binary and a runtime
config, cached by their hash (a second to write).
"""

from __future__ import annotations

from pathlib import Path

from localcluster import images, ociarchive
from localcluster.images import LOCAL_REGISTRY, Image
from localcluster.versions import KEDA_VERSION, PROMETHEUS_OPERATOR_VERSION, PROMETHEUS_VERSION

#: As upstream's images: nobody.
NOBODY = "65534:65534"
OPERATOR_IMAGE = f"{LOCAL_REGISTRY}/prometheus-operator:{PROMETHEUS_OPERATOR_VERSION}"
RELOADER_IMAGE = f"{LOCAL_REGISTRY}/prometheus-config-reloader:{PROMETHEUS_OPERATOR_VERSION}"
PROMETHEUS_IMAGE = f"{LOCAL_REGISTRY}/prometheus:{PROMETHEUS_VERSION}"
#: The operator runs the reloader as `/bin/prometheus-config-reloader` (its `command`); Debian's
#: `/bin` is a symlink to `usr/bin`, so the file goes there.
RELOADER_PATH = "/usr/bin/prometheus-config-reloader"
OPERATOR_PATH = "/usr/bin/prometheus-operator"
PROMETHEUS_PATH = "/usr/bin/prometheus"
#: KEDA's operator and metrics server (kedamanifests.py), one binary each.
KEDA_OPERATOR_IMAGE = f"{LOCAL_REGISTRY}/keda-operator:{KEDA_VERSION}"
KEDA_ADAPTER_IMAGE = f"{LOCAL_REGISTRY}/keda-adapter:{KEDA_VERSION}"
KEDA_OPERATOR_PATH = "/usr/bin/keda-operator"
KEDA_ADAPTER_PATH = "/usr/bin/keda-adapter"


def binary_file(source: Path, target: str) -> ociarchive.LayerFile:
    return ociarchive.LayerFile(target.lstrip("/"), source.read_bytes(), mode=0o755)


def ensure_binary_image(
    base: Image, name: str, ref: str, path: str, working_dir: str = ""
) -> Image:
    """`ref`: the base plus the built binary `name` at `path`, its entrypoint (the operator
    passes the arguments), run as nobody."""
    from localcluster.build import build

    binary = build([name])[name]
    config = images.runtime_on(base, entrypoint=(path,), user=NOBODY, working_dir=working_dir)
    return images.ensure_composed(name, ref, base, [binary_file(binary, path)], config)


def ensure_stack_images() -> list[Image]:
    """All three, on the project's base (built first if missing)."""
    with images.building():
        base = images.ensure_base()
        return [
            ensure_binary_image(base, "prometheus-operator", OPERATOR_IMAGE, OPERATOR_PATH),
            ensure_binary_image(base, "prometheus-config-reloader", RELOADER_IMAGE, RELOADER_PATH),
            ensure_binary_image(
                base, "prometheus", PROMETHEUS_IMAGE, PROMETHEUS_PATH, working_dir="/prometheus"
            ),
        ]


def ensure_keda_images() -> list[Image]:
    """KEDA's two images, on the project's base (built first if missing)."""
    with images.building():
        base = images.ensure_base()
        return [
            ensure_binary_image(base, "keda-operator", KEDA_OPERATOR_IMAGE, KEDA_OPERATOR_PATH),
            ensure_binary_image(base, "keda-adapter", KEDA_ADAPTER_IMAGE, KEDA_ADAPTER_PATH),
        ]
