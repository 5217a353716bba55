"""Where things live in the repository, and the project's single version."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = ROOT / "crds"
CHART_DIR = ROOT / "charts" / "vod-operator"
MANIFESTS_DIR = ROOT / "manifests"
EXAMPLES_DIR = ROOT / "examples"
DOCS_DIR = ROOT / "docs"
REFERENCE_DOC = DOCS_DIR / "reference.md"
#: The streaming server's settings page, generated from vod_stream.config.SPECS.
SETTINGS_DOC = DOCS_DIR / "streaming-settings.md"
#: The operator's own alert rules (a plain rules file), and where packaging copies it.
OPERATOR_RULES = ROOT / "monitoring" / "rules" / "operator.rules.yaml"
DEMO_DIR = ROOT / ".demo"


def version(root: Path = ROOT) -> str:
    """The project version from pyproject.toml (the one place it is written)."""
    with (root / "pyproject.toml").open("rb") as fh:
        data = tomllib.load(fh)
    return str(data["project"]["version"])


def crd_files(crds_dir: Path = CRDS_DIR) -> list[Path]:
    """The CRD manifests in a CRD folder (every YAML file but kustomize's own), sorted."""
    return sorted(
        p
        for p in crds_dir.glob("*.y*ml")
        if p.name not in {"kustomization.yaml", "kustomization.yml"}
    )
