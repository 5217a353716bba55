"""The operator's metrics in the install: the Deployment's `metrics` port is the operator's
own setting, and components/monitoring puts a Service and a ServiceMonitor in front of it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.delivery.rendered import kustomize, one
from tests.unit.delivery.test_delivery_install import operator_image_stage
from vod_delivery import project
from vod_operator.options import Options

pytestmark = pytest.mark.unit

COMPONENT = project.MANIFESTS_DIR / "components" / "monitoring"


def container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (found,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found  # type: ignore[no-any-return]


def env(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The container's literal environment (downward API values left out)."""
    return {e["name"]: e["value"] for e in container(docs).get("env", []) if "value" in e}


def test_the_operator_serves_metrics_on_the_port_the_deployment_names() -> None:
    docs = kustomize()
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ports["metrics"] == Options().metrics_port
    served = Options.from_env(env(docs))
    assert served.metrics_port == ports["metrics"]
    assert served.metrics_bind_address == "0.0.0.0"  # reachable from Prometheus, not just lo
    assert (
        str(ports["metrics"]) in next(c for c in operator_image_stage() if c.cmd == "EXPOSE").value
    )


def test_monitoring_is_a_component_the_monitoring_overlay_adds() -> None:
    component = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    overlay = yaml.safe_load(
        (project.MANIFESTS_DIR / "overlays" / "monitoring" / "kustomization.yaml").read_text()
    )
    assert overlay["components"] == ["../../components/monitoring"]
    assert overlay["resources"] == ["../default"]
    default = [d for d in kustomize() if d["kind"] not in {"Service", "ServiceMonitor"}]
    assert [d for d in kustomize("monitoring") if d in default] == default  # nothing else changes


def test_metrics_service_reaches_the_operator_pod_port() -> None:
    docs = kustomize("monitoring")
    service = one(docs, "Service")
    deployment = one(docs, "Deployment")
    assert service["metadata"]["name"] == "vod-operator-metrics"
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["targetPort"] == "metrics"
    assert "metrics" in {p["name"] for p in container(docs)["ports"]}


def test_service_monitor_scrapes_the_metrics_service_keeping_platform_namespaces() -> None:
    docs = kustomize("monitoring")
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    # Selects the metrics Service only, not any other Service of the operator.
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # per-platform series carry their own `namespace`
    # job="vod-operator" (monitoring/README.md), whatever the Service is called.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "vod-operator"


def test_chart_metrics_values_default_to_what_kustomize_installs() -> None:
    """Without helm (tests/cluster/test_install_chart.py renders the chart): the values."""
    schema = json.loads((project.CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((project.CHART_DIR / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    metrics = values["metrics"]
    assert metrics["enabled"] is True
    assert metrics["port"] == Options().metrics_port
    assert metrics["serviceMonitor"]["interval"] == "30s"
    monitor = one(kustomize("monitoring"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["interval"] == metrics["serviceMonitor"]["interval"]
    for bad in ({"port": 0}, {"serviceMonitor": {"interval": "soon"}}, {"scrape": True}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**values, "metrics": {**metrics, **bad}}, schema)
