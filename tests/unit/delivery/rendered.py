"""Rendered install manifests (kustomize) and the RBAC the operator needs, for the tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from functools import cache
from typing import Any

import yaml

from vod_delivery import project
from vod_operator import kube


@cache
def kustomize(overlay: str = "default") -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(project.MANIFESTS_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a ClusterRole grants (no wildcards allowed)."""
    triples = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    triples.add((group, resource, verb))
    return triples


def needed() -> set[tuple[str, str, str]]:
    return {(g, r, v) for g, r, verbs in kube.PERMISSIONS for v in verbs}
