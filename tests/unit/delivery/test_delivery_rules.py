"""The operator's alert rules as packaging ships them: the kustomize component's PrometheusRule
and the chart's copy carry exactly monitoring/rules/operator.rules.yaml."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.delivery.test_delivery_sync import fake_repo
from vod_delivery import project, sync

pytestmark = pytest.mark.unit

COMPONENT = project.MANIFESTS_DIR / "components" / "monitoring"


def _groups() -> list[dict[str, object]]:
    groups: list[dict[str, object]] = yaml.safe_load(project.OPERATOR_RULES.read_text())["groups"]
    return groups


def _kustomize_with_component(tmp_path: Path) -> list[dict[str, object]]:
    """An overlay like a user's: the default install plus the monitoring component."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = Path(os.path.relpath(project.MANIFESTS_DIR, overlay))
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(rel / "overlays" / "default")],
                "components": [str(rel / "components" / "monitoring")],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_component_ships_the_operator_rules(tmp_path: Path) -> None:
    docs = _kustomize_with_component(tmp_path)
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "vod-operator-system"  # type: ignore[index]
    assert rule["spec"] == {"groups": _groups()}


def test_component_is_opt_in() -> None:
    from tests.unit.delivery.rendered import kustomize

    assert not [d for d in kustomize() if d["kind"] == "PrometheusRule"]


def test_chart_copy_is_the_rules_file() -> None:
    chart_copy = project.CHART_DIR / "files" / "monitoring" / "operator.rules.yaml"
    assert chart_copy.read_bytes() == project.OPERATOR_RULES.read_bytes()
    template = (project.CHART_DIR / "templates" / "prometheusrule.yaml").read_text()
    assert ".Values.metrics.prometheusRule.enabled" in template
    assert '.Files.Get "files/monitoring/operator.rules.yaml"' in template
    values = yaml.safe_load((project.CHART_DIR / "values.yaml").read_text())
    assert values["metrics"]["prometheusRule"] == {"enabled": False}


def test_edited_rules_are_drift_until_synced(tmp_path: Path) -> None:
    root = fake_repo(tmp_path)
    rules = root / project.OPERATOR_RULES.relative_to(project.ROOT)
    assert sync.check(root) == []
    rules.write_text(rules.read_text().replace("for: 10m", "for: 20m"))
    assert set(sync.check(root)) == {str(sync.CHART_RULES), str(sync.COMPONENT_RULE)}
    sync.apply(root)
    generated = yaml.safe_load((root / sync.COMPONENT_RULE).read_text())
    assert generated["spec"]["groups"][0]["rules"][0]["for"] == "20m"
    assert (root / sync.CHART_RULES).read_text() == rules.read_text()
