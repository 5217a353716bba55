"""Generate docs/reference.md from the CRDs in crds/ (and check that the committed one is fresh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vod_delivery import crdref, project


def load_crds(crds_dir: Path = project.CRDS_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in the CRD folder."""
    docs: list[dict[str, Any]] = []
    for path in project.crd_files(crds_dir):
        docs += [
            d
            for d in yaml.safe_load_all(path.read_text())
            if d and d.get("kind") == "CustomResourceDefinition"
        ]
    return docs


def expected(crds_dir: Path = project.CRDS_DIR) -> str:
    """The reference as the current CRDs describe it."""
    return crdref.render(load_crds(crds_dir), title="vod-operator custom resource reference")


def is_fresh(doc: Path = project.REFERENCE_DOC, crds_dir: Path = project.CRDS_DIR) -> bool:
    """True when the committed reference equals what the CRDs generate."""
    return doc.exists() and doc.read_text() == expected(crds_dir)


def write(doc: Path = project.REFERENCE_DOC, crds_dir: Path = project.CRDS_DIR) -> None:
    """Regenerate the reference document."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(expected(crds_dir))
