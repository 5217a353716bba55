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
    assert kinds == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role",
        "RoleBinding", "Service", "ServiceAccount",
    ]  # fmt: skip
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
    # The Lease: a Role in the release namespace, as kustomize's in its namespace.
    for kind in ("Role", "RoleBinding"):
        chart, ours = one(template(), kind), one(kustomize(), kind)
        assert chart["metadata"]["name"] == ours["metadata"]["name"]
        assert chart["metadata"]["namespace"] == ours["metadata"]["namespace"] == NAMESPACE
        for key in ("rules", "roleRef", "subjects"):
            assert chart.get(key) == ours.get(key), (kind, key)


def test_pod_disruption_budget_matches_kustomize_and_follows_the_replicas() -> None:
    chart = one(template(), "PodDisruptionBudget")
    ours = one(kustomize(), "PodDisruptionBudget")
    assert chart["spec"] == ours["spec"]
    assert (chart["metadata"]["name"], chart["metadata"]["namespace"]) == (
        ours["metadata"]["name"],
        ours["metadata"]["namespace"],
    )
    single = template("--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    assert "PodDisruptionBudget" not in {d["kind"] for d in single}  # it would block drains
    assert {"Role", "RoleBinding"}.isdisjoint(d["kind"] for d in single)
    env = one(single, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "VOD_OPERATOR_LEADER_ELECTION", "value": "false"} in env
    assert one(single, "Deployment")["spec"]["replicas"] == 1


def test_two_writers_are_refused() -> None:
    result = helm(
        "template", "x", str(project.CHART_DIR), "--kube-version", KUBE_VERSION,
        "--set", "leaderElection.enabled=false", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled" in result.stderr


def test_a_given_affinity_replaces_the_default_spread() -> None:
    default = one(template(), "Deployment")["spec"]["template"]["spec"]["affinity"]
    assert "podAntiAffinity" in default
    given = template("--set", "affinity.nodeAffinity.x=1")
    assert one(given, "Deployment")["spec"]["template"]["spec"]["affinity"] == {
        "nodeAffinity": {"x": 1}
    }


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
    assert {d["kind"] for d in docs} == {
        "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"
    }  # fmt: skip
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


def test_metrics_service_and_service_monitor_match_kustomize() -> None:
    """The chart's defaults serve metrics behind a Service; the ServiceMonitor is a value away.
    Both are the objects of manifests/components/monitoring."""
    chart = template("--set", "metrics.serviceMonitor.enabled=true")
    ours = kustomize("monitoring")
    for kind in ("Service", "ServiceMonitor"):
        mine, theirs = one(chart, kind), one(ours, kind)
        assert mine["spec"] == theirs["spec"], kind
        assert mine["metadata"]["name"] == theirs["metadata"]["name"], kind
        assert mine["metadata"]["namespace"] == theirs["metadata"]["namespace"], kind
        assert theirs["metadata"]["labels"].items() <= mine["metadata"]["labels"].items(), kind
    assert "ServiceMonitor" not in {d["kind"] for d in template()}  # off by default


def test_metrics_values_are_applied() -> None:
    docs = template(
        "--set", "metrics.port=9100", "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.interval=10s",
        "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    )  # fmt: skip
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
    assert {"name": "VOD_OPERATOR_METRICS_PORT", "value": "9100"} in container["env"]
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9100
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["interval"] == "10s"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_metrics_can_be_turned_off() -> None:
    docs = template(
        "--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"
    )
    assert {d["kind"] for d in docs} == {
        "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role",
        "RoleBinding", "ServiceAccount",
    }  # fmt: skip
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in container["ports"]] == ["healthz"]
    assert {"name": "VOD_OPERATOR_METRICS_PORT", "value": "0"} in container["env"]


def test_schema_refuses_bad_values() -> None:
    for bad in (
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set", "replicas=3"],
        ["--set", "replicaCount=0"],
        ["--set", "leaderElection.leaseName=x"],
        ["--set", "metrics.dashboards.enabled=yes"],
        ["--set", "metrics.port=0"],
        ["--set", "metrics.serviceMonitor.interval=soon"],
        ["--set", "metrics.serviceMonitor.scrape=true"],
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
