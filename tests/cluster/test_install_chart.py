"""The Helm chart: lint-clean, schema-validated, and installing what kustomize installs.

In the cluster tier because it needs the helm that `make cluster-build` builds with the control
plane binaries (no API server is used here; tests/cluster/test_install.py uses one).
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from localcluster.binaries import helm_path
from localcluster.versions import KUBERNETES_VERSION
from tests.unit.delivery.rendered import granted, kustomize, needed, one
from tests.unit.delivery.test_delivery_dashboards import (
    dashboard_configmaps,
    expected_dashboard_files,
    kustomize_with_monitoring,
)
from vod_delivery import project

pytestmark = pytest.mark.cluster

NAMESPACE = "vod-operator-system"
#: Render for the pinned control plane (a helm built with `go install` would assume 1.20).
KUBE_VERSION = KUBERNETES_VERSION.lstrip("v")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_path()), *args], capture_output=True, text=True, check=check, timeout=120
    )


@cache
def template(*extra: str) -> tuple[dict[str, Any], ...]:
    out = helm(
        "template", "vod-operator", str(project.CHART_DIR), "--namespace", NAMESPACE,
        "--kube-version", KUBE_VERSION, *extra,
    ).stdout  # fmt: skip
    return tuple(d for d in yaml.safe_load_all(out) if d)


def test_lint_strict_is_clean() -> None:
    result = helm("lint", "--strict", str(project.CHART_DIR), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout


def test_template_renders_the_install() -> None:
    kinds = sorted(d["kind"] for d in template())
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    crds = [d for d in template("--include-crds") if d["kind"] == "CustomResourceDefinition"]
    assert crds == [yaml.safe_load(p.read_text()) for p in project.crd_files()]


def test_rbac_matches_kustomize_and_the_operator() -> None:
    chart_role = one(template(), "ClusterRole")
    kustomize_role = one(kustomize(), "ClusterRole")
    assert chart_role["rules"] == kustomize_role["rules"]
    assert granted(chart_role["rules"]) == needed()
    chart_binding = one(template(), "ClusterRoleBinding")
    kustomize_binding = one(kustomize(), "ClusterRoleBinding")
    assert chart_binding["roleRef"] == kustomize_binding["roleRef"]
    assert chart_binding["subjects"] == kustomize_binding["subjects"]


def test_deployment_matches_kustomize() -> None:
    chart = one(template(), "Deployment")
    ours = one(kustomize(), "Deployment")
    assert chart["metadata"]["name"] == ours["metadata"]["name"]
    assert chart["metadata"]["namespace"] == ours["metadata"]["namespace"]
    for key in ("replicas", "strategy", "selector"):
        assert chart["spec"][key] == ours["spec"][key], key
    assert chart["spec"]["template"]["spec"] == ours["spec"]["template"]["spec"]
    assert chart["spec"]["template"]["metadata"] == ours["spec"]["template"]["metadata"]
    account = one(template(), "ServiceAccount")["metadata"]
    assert (account["name"], account["namespace"]) == (
        one(kustomize(), "ServiceAccount")["metadata"]["name"],
        NAMESPACE,
    )


def test_values_are_applied() -> None:
    docs = template(
        "--set", "image.tag=9.9.9", "--set", "image.pullPolicy=Never", "--set", "rbac.create=false"
    )
    assert {d["kind"] for d in docs} == {"Deployment", "ServiceAccount"}
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/vod-operator/vod-operator:9.9.9"
    assert container["imagePullPolicy"] == "Never"


def test_dashboards_ship_unchanged_as_kustomize_ships_them(tmp_path: Path) -> None:
    """metrics.dashboards.enabled: one ConfigMap per monitoring/dashboards/*.json for the Grafana
    sidecar, the file byte for byte, named and placed as the kustomize component does."""
    assert dashboard_configmaps(list(template())) == {}  # off by default
    chart = dashboard_configmaps(list(template("--set", "metrics.dashboards.enabled=true")))
    assert {name: cm["data"][name] for name, cm in chart.items()} == expected_dashboard_files()
    ours = dashboard_configmaps(kustomize_with_monitoring(tmp_path))
    for name, cm in chart.items():
        assert cm["metadata"]["name"] == ours[name]["metadata"]["name"]
        assert cm["metadata"]["namespace"] == ours[name]["metadata"]["namespace"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_schema_refuses_bad_values() -> None:
    for bad in (
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set", "replicas=3"],
        ["--set", "metrics.dashboards.enabled=yes"],
    ):
        result = helm(
            "template", "x", str(project.CHART_DIR), "--kube-version", KUBE_VERSION, *bad,
            check=False,
        )  # fmt: skip
        assert result.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in result.stderr


def test_default_values_satisfy_the_schema() -> None:
    schema = json.loads((project.CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((project.CHART_DIR / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "healthPort": 0}, schema)


def test_chart_refuses_clusters_older_than_it_supports() -> None:
    result = helm("template", "x", str(project.CHART_DIR), "--kube-version", "1.25.0", check=False)
    assert result.returncode != 0
    assert "requires kubeVersion" in result.stderr
