"""spec.autoscaling: the schema, the scaler plan, its rendering and the reconciler's switches."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client

from tests.unit.operator import crdschema
from tests.unit.operator.fakekube import FakeKube
from vod_operator import autoscaling, compare, naming, status
from vod_operator.autoscaling import HPA, SCALED_OBJECT, MetricsApis
from vod_operator.kube import Kube, KubeError
from vod_operator.reconcile import Reconciler
from vod_operator.render import RenderInputs, render

pytestmark = pytest.mark.unit

NS = "media"
T0 = "2026-01-01T00:00:00Z"
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
IN_FLIGHT = autoscaling.IN_FLIGHT_SERIES
EGRESS = autoscaling.EGRESS_RATE_METRIC
KEDA = MetricsApis(keda=True)
CUSTOM = MetricsApis(custom=frozenset({IN_FLIGHT, EGRESS}))
EXTERNAL = MetricsApis(external=frozenset({IN_FLIGHT, EGRESS}))
NOTHING = MetricsApis()


def spec(**autoscaling_fields: Any) -> dict[str, Any]:
    """A defaulted spec with autoscaling enabled and `autoscaling_fields` on top."""
    body = {"storage": {"emptyDir": {}}, "autoscaling": {"enabled": True, **autoscaling_fields}}
    return crdschema.platform(body, name="demo", namespace=NS)["spec"]  # type: ignore[no-any-return]


def plan(apis: MetricsApis, **fields: Any) -> autoscaling.Plan:
    return autoscaling.plan("demo", NS, spec(**fields), apis)


BOTH = {"targetInFlightRequestsPerPod": 40, "targetEgressBytesPerSecondPerPod": "100Mi"}
WITH_ADDRESS = {**BOTH, "prometheus": {"serverAddress": PROMETHEUS}}


# -- the schema ----------------------------------------------------------------------------------


def _autoscaling_schema() -> dict[str, Any]:
    return crdschema.schema()["properties"]["spec"]["properties"]["autoscaling"]  # type: ignore[no-any-return]


def test_defaults_keep_the_cpu_target_and_scale_out_fast_in_slow() -> None:
    defaults = spec()
    scaling = defaults["autoscaling"]
    assert (scaling["minReplicas"], scaling["maxReplicas"]) == (2, 10)
    assert scaling["targetCPUUtilizationPercentage"] == 70  # as before: same meaning
    assert "targetInFlightRequestsPerPod" not in scaling
    assert "targetEgressBytesPerSecondPerPod" not in scaling
    assert scaling["prometheus"] == {}
    up, down = scaling["behavior"]["scaleUp"], scaling["behavior"]["scaleDown"]
    assert (up["stabilizationWindowSeconds"], up["selectPolicy"]) == (0, "Max")
    assert up["policies"] == [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
        {"type": "Pods", "value": 4, "periodSeconds": 15},
    ]
    assert (down["stabilizationWindowSeconds"], down["selectPolicy"]) == (300, "Max")
    assert down["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 60},
        {"type": "Percent", "value": 10, "periodSeconds": 60},
    ]


def test_an_existing_resource_keeps_its_meaning() -> None:
    """Stored before the new fields existed: the same CPU HPA, only the behaviour is new."""
    old = spec(minReplicas=3, maxReplicas=8, targetCPUUtilizationPercentage=55)
    chosen = autoscaling.plan("demo", NS, old, NOTHING)
    assert (chosen.kind, chosen.ready, chosen.cpu) == (HPA, True, 55)
    assert chosen.metrics == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 55},
            },
        }
    ]


def test_cel_rules_name_only_fields_of_the_schema() -> None:
    """No CEL evaluator runs in the unit tier: at least every field a rule reads exists, and the
    rules are the ones documented (the cluster tier's API server evaluates them)."""
    node = _autoscaling_schema()
    fields = set(node["properties"])
    rules = [r["rule"] for r in node["x-kubernetes-validations"]]
    for rule in rules:
        assert set(re.findall(r"self\.(\w+)", rule)) <= fields, rule
    at_least_one = rules[1]
    for target in (
        "targetCPUUtilizationPercentage",
        "targetInFlightRequestsPerPod",
        "targetEgressBytesPerSecondPerPod",
    ):
        assert target in at_least_one
    egress = node["properties"]["targetEgressBytesPerSecondPerPod"]["x-kubernetes-validations"]
    assert "isQuantity(self)" in egress[0]["rule"]
    assert "quantity('1Ki')" in egress[0]["rule"]
    address = node["properties"]["prometheus"]["properties"]["serverAddress"]
    pattern = re.search(r"matches\('(.*)'\)", address["x-kubernetes-validations"][0]["rule"])
    assert pattern is not None
    regex = pattern.group(1).replace("\\\\", "\\")  # the CEL string literal's escapes
    assert re.match(regex, PROMETHEUS)
    assert re.match(regex, "https://prom.example.com/prometheus")
    assert not re.match(regex, "prometheus:9090")
    assert not re.match(regex, "http://has space")


def _boolean_rule(rule: str, value: dict[str, Any]) -> bool:
    """Evaluate a CEL rule made only of has(), field reads, comparisons, !, && and || (the
    autoscaling object's own rules) against `value`: no CEL evaluator runs in the unit tier."""
    assert re.fullmatch(r"[\w\s.()!&|<=>]+", rule), f"not a plain boolean rule: {rule}"
    text = re.sub(r"has\(self\.(\w+)\)", r"('\1' in value)", rule)
    text = re.sub(r"self\.(\w+)", r"value['\1']", text)
    text = text.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    text = text.replace(" not =", "!=")
    return bool(eval(text, {}, {"value": value}))  # the CRD's own rule text, checked above


@pytest.mark.parametrize(
    ("autoscaling_fields", "allowed"),
    [
        ({}, True),  # the defaults: disabled, CPU 70
        ({"enabled": True}, True),  # CPU 70 by default
        ({"enabled": True, "targetCPUUtilizationPercentage": 0}, False),
        ({"enabled": False, "targetCPUUtilizationPercentage": 0}, True),  # off: not checked
        ({"enabled": True, "targetCPUUtilizationPercentage": 0, **BOTH}, True),
        (
            {
                "enabled": True,
                "targetCPUUtilizationPercentage": 0,
                "targetEgressBytesPerSecondPerPod": "1Gi",
            },
            True,
        ),
        ({"enabled": True, "minReplicas": 5, "maxReplicas": 4}, False),
        ({"enabled": True, "minReplicas": 4, "maxReplicas": 4}, True),
    ],
)
def test_the_autoscaling_cel_rules_on_defaulted_objects(
    autoscaling_fields: dict[str, Any], allowed: bool
) -> None:
    body = {"storage": {"emptyDir": {}}, "autoscaling": autoscaling_fields}
    value = crdschema.platform(body)["spec"]["autoscaling"]  # defaults first, as the API server
    rules = [r["rule"] for r in _autoscaling_schema()["x-kubernetes-validations"]]
    assert all(_boolean_rule(rule, value) for rule in rules) is allowed


def test_behavior_mirrors_the_hpa_limits() -> None:
    behavior = _autoscaling_schema()["properties"]["behavior"]["properties"]
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior[direction]["properties"]
        window = rules["stabilizationWindowSeconds"]
        assert (window["minimum"], window["maximum"]) == (0, 3600)
        assert rules["selectPolicy"]["enum"] == ["Max", "Min", "Disabled"]
        item = rules["policies"]["items"]
        assert item["required"] == ["type", "value", "periodSeconds"]
        assert item["properties"]["type"]["enum"] == ["Pods", "Percent"]
        assert item["properties"]["periodSeconds"]["maximum"] == 1800
        assert rules["policies"]["minItems"] == 1


# -- the plan ------------------------------------------------------------------------------------


def test_cpu_only_is_a_cpu_hpa_whatever_the_cluster_serves() -> None:
    for apis in (NOTHING, KEDA, CUSTOM):
        chosen = plan(apis, prometheus={"serverAddress": PROMETHEUS})
        assert (chosen.kind, chosen.ready, chosen.reason) == (HPA, True, HPA)
        assert chosen.message == "HorizontalPodAutoscaler scales on CPU 70%"


def test_keda_with_an_address_is_a_scaled_object_with_per_pod_prometheus_triggers() -> None:
    chosen = plan(KEDA, **WITH_ADDRESS)
    assert (chosen.kind, chosen.ready, chosen.reason) == (SCALED_OBJECT, True, SCALED_OBJECT)
    cpu, in_flight, egress = chosen.triggers
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    assert in_flight == {
        "type": "prometheus",
        "name": "in-flight-requests",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": PROMETHEUS,
            "query": 'sum(vod_http_requests_in_flight{namespace="media", platform="demo"})',
            "threshold": "40",
            "ignoreNullValues": "false",
        },
    }
    assert egress["metadata"]["query"] == (
        'sum(rate(vod_http_response_body_bytes_total{namespace="media", platform="demo"}[2m]))'
    )
    assert egress["metadata"]["threshold"] == "104857600"  # 100Mi, a plain number for KEDA
    assert chosen.message == (
        "KEDA ScaledObject scales on CPU 70%, 40 requests in flight per pod (Prometheus), "
        "100Mi bytes/s per pod (Prometheus)"
    )


def test_the_egress_window_holds_four_scrapes_and_at_least_a_minute() -> None:
    fast = spec(**BOTH)
    fast["monitoring"]["scrapeInterval"] = "10s"
    assert autoscaling.targets("demo", NS, fast)[1].query.endswith("[1m]))")
    slow = spec(**BOTH)
    slow["monitoring"]["scrapeInterval"] = "1m"
    assert autoscaling.targets("demo", NS, slow)[1].query.endswith("[4m]))")


def test_without_cpu_the_scaled_object_has_only_prometheus_triggers() -> None:
    chosen = plan(KEDA, targetCPUUtilizationPercentage=0, **WITH_ADDRESS)
    assert [t["type"] for t in chosen.triggers] == ["prometheus", "prometheus"]


def test_a_custom_metrics_adapter_gives_pods_metrics() -> None:
    chosen = plan(CUSTOM, **BOTH)
    assert (chosen.kind, chosen.ready) == (HPA, True)
    assert [m["type"] for m in chosen.metrics] == ["Resource", "Pods", "Pods"]
    assert chosen.metrics[2] == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "vod_http_response_body_bytes_per_second"},
            "target": {"type": "AverageValue", "averageValue": "100Mi"},
        },
    }


def test_an_external_metrics_adapter_gives_external_metrics_of_the_platform() -> None:
    chosen = plan(EXTERNAL, **BOTH)
    assert (chosen.kind, chosen.ready) == (HPA, True)
    assert chosen.metrics[1] == {
        "type": "External",
        "external": {
            "metric": {
                "name": "vod_http_requests_in_flight",
                "selector": {"matchLabels": {"platform": "demo"}},
            },
            "target": {"type": "AverageValue", "averageValue": "40"},
        },
    }


def test_keda_without_an_address_falls_back_to_an_adapter_else_says_what_is_missing() -> None:
    chosen = plan(MetricsApis(keda=True, custom=frozenset({IN_FLIGHT, EGRESS})), **BOTH)
    assert (chosen.kind, chosen.ready) == (HPA, True)
    chosen = plan(KEDA, **BOTH)
    assert (chosen.kind, chosen.ready, chosen.reason) == (HPA, False, "PrometheusAddressMissing")
    assert chosen.message.startswith(
        "spec.autoscaling.targetInFlightRequestsPerPod and "
        "spec.autoscaling.targetEgressBytesPerSecondPerPod not honoured: KEDA is installed but "
        "spec.autoscaling.prometheus.serverAddress is not set"
    )
    assert chosen.message.endswith("the HorizontalPodAutoscaler scales on CPU 70% only")


def test_nothing_to_read_the_metrics_is_a_cpu_hpa_and_a_condition_never_silence() -> None:
    chosen = plan(NOTHING, **WITH_ADDRESS)
    assert (chosen.kind, chosen.ready, chosen.reason) == (HPA, False, "MetricsAPIMissing")
    assert [m["type"] for m in chosen.metrics] == ["Resource"]
    assert "KEDA (keda.sh/v1alpha1 is not served)" in chosen.message
    assert "vod_http_requests_in_flight, vod_http_response_body_bytes_per_second" in chosen.message
    chosen = plan(NOTHING, **BOTH)
    assert "KEDA (keda.sh/v1alpha1) with spec.autoscaling.prometheus.serverAddress set" in (
        chosen.message
    )


def test_an_adapter_serving_one_metric_honours_that_one_and_names_the_other() -> None:
    chosen = plan(MetricsApis(custom=frozenset({IN_FLIGHT})), **BOTH)
    assert (chosen.kind, chosen.ready) == (HPA, False)
    assert [m["type"] for m in chosen.metrics] == ["Resource", "Pods"]
    assert [t.field for t in chosen.missing] == ["targetEgressBytesPerSecondPerPod"]
    assert chosen.message.startswith("spec.autoscaling.targetEgressBytesPerSecondPerPod not")
    assert chosen.message.endswith(
        "the HorizontalPodAutoscaler scales on CPU 70%, 40 requests in flight per pod (Pods) only"
    )


def test_with_cpu_off_and_no_metrics_api_no_scaler_runs_and_the_floor_holds() -> None:
    chosen = plan(NOTHING, targetCPUUtilizationPercentage=0, targetInFlightRequestsPerPod=40)
    assert (chosen.kind, chosen.ready) == (None, False)
    assert chosen.message.endswith("no autoscaler runs: the Deployment holds minReplicas (2) pods")
    platform = crdschema.platform(
        {
            "storage": {"emptyDir": {}},
            "replicas": 5,
            "autoscaling": {
                "enabled": True,
                "targetCPUUtilizationPercentage": 0,
                "targetInFlightRequestsPerPod": 40,
            },
        }
    )
    kinds = {m["kind"]: m for m in render(platform, RenderInputs())}
    assert HPA not in kinds
    assert SCALED_OBJECT not in kinds
    assert kinds["Deployment"]["spec"]["replicas"] == 2


def test_autoscaling_off_is_no_scaler_and_says_so() -> None:
    body = crdschema.platform({"storage": {"emptyDir": {}}})
    chosen = autoscaling.plan("demo", NS, body["spec"], KEDA)
    assert (chosen.kind, chosen.ready, chosen.reason) == (None, False, "Disabled")


# -- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "apis", [NOTHING, KEDA, CUSTOM, EXTERNAL], ids=["nothing", "keda", "custom", "external"]
)
@pytest.mark.parametrize("fields", [{}, BOTH, WITH_ADDRESS], ids=["cpu", "both", "address"])
def test_render_gives_exactly_one_scaler(apis: MetricsApis, fields: dict[str, Any]) -> None:
    body = crdschema.platform(
        {"storage": {"emptyDir": {}}, "autoscaling": {"enabled": True, **fields}}
    )
    kinds = [m["kind"] for m in render(body, RenderInputs(metrics_apis=apis))]
    scalers = [k for k in kinds if k in autoscaling.SCALER_KINDS]
    expected = SCALED_OBJECT if apis.keda and "prometheus" in fields else HPA
    assert scalers == [expected]


def test_the_scaled_object_targets_the_deployment_with_the_behaviour() -> None:
    platform = crdschema.example_platform("showcase")
    manifests = {
        m["kind"]: m
        for m in render(platform, RenderInputs(signing_keys={"k": "a2V5"}, metrics_apis=KEDA))
    }
    scaled = manifests[SCALED_OBJECT]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "showcase-stream",
    }
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 6)
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert "replicas" not in manifests["Deployment"]["spec"]
    assert HPA not in manifests


def test_average_values_compare_as_quantities() -> None:
    desired = {"target": {"type": "AverageValue", "averageValue": "1024Ki"}}
    assert (
        compare.drift(desired, {"target": {"type": "AverageValue", "averageValue": "1Mi"}}) is None
    )
    assert compare.drift(desired, {"target": {"type": "AverageValue", "averageValue": "1M"}})


# -- reconciling ---------------------------------------------------------------------------------


def setup(apis: MetricsApis, **fields: Any) -> FakeKube:
    kube = FakeKube(apis=apis)
    body = {"storage": {"emptyDir": {}}, "autoscaling": {"enabled": True, **fields}}
    kube.add_platform(crdschema.platform(body, name="demo", namespace=NS))
    return kube


def run(kube: FakeKube, reconciler: Reconciler | None = None) -> Any:
    return (reconciler or Reconciler(kube, now=lambda: T0)).reconcile(NS, "demo")


def condition(kube: FakeKube) -> dict[str, Any]:
    found = status.condition(kube.platform(NS, "demo")["status"], "AutoscalingReady")
    assert found is not None
    return dict(found)


def test_keda_arriving_swaps_the_hpa_for_a_scaled_object_deleting_first() -> None:
    kube = setup(NOTHING, **WITH_ADDRESS)
    reconciler = Reconciler(kube, now=lambda: T0)
    run(kube, reconciler)
    assert kube.has(HPA, NS, "demo-stream")
    assert condition(kube)["reason"] == "MetricsAPIMissing"
    assert ("Warning", "MetricsAPIMissing") in [(t, r) for t, r, _ in kube.events]

    kube.apis = KEDA
    kube.writes.clear()
    result = run(kube, reconciler)
    assert result.error is None
    assert result.pruned == ["HorizontalPodAutoscaler/demo-stream"]
    assert "ScaledObject/demo-stream" in result.created
    assert not kube.has(HPA, NS, "demo-stream")
    # KEDA refuses a ScaledObject for a Deployment another HPA scales: the HPA goes first.
    writes = [w for w in kube.writes if w[1].endswith("/demo-stream")]
    assert writes.index(("delete", "HorizontalPodAutoscaler/demo-stream")) < writes.index(
        ("apply", "ScaledObject/demo-stream")
    )
    assert (condition(kube)["status"], condition(kube)["reason"]) == ("True", SCALED_OBJECT)

    # KEDA's own HPA carries the ScaledObject's labels but is owned by the ScaledObject.
    scaled_uid = kube.child(SCALED_OBJECT, NS, "demo-stream")["metadata"]["uid"]
    kube.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": HPA,
            "metadata": {
                "name": "keda-hpa-demo-stream",
                "namespace": NS,
                "labels": naming.child_labels("demo", "streaming"),
                "ownerReferences": [{"kind": SCALED_OBJECT, "uid": scaled_uid, "controller": True}],
            },
            "spec": {"minReplicas": 2, "maxReplicas": 10},
        },
        manager="keda",
    )
    kube.writes.clear()
    run(kube, reconciler)
    assert [w for w in kube.writes if not w[1].startswith("VideoPlatform/")] == []
    assert kube.has(HPA, NS, "keda-hpa-demo-stream")


def test_dropping_the_metric_targets_swaps_the_scaled_object_back_for_an_hpa() -> None:
    kube = setup(KEDA, **WITH_ADDRESS)
    run(kube)
    assert kube.has(SCALED_OBJECT, NS, "demo-stream")
    assert not kube.has(HPA, NS, "demo-stream")
    scaling: dict[str, Any] = {"enabled": True}
    body = {"storage": {"emptyDir": {}}, "autoscaling": scaling}
    new = crdschema.platform(body, name="demo", namespace=NS)
    new["status"] = kube.platform(NS, "demo")["status"]
    kube.add_platform(new)
    result = run(kube)
    assert result.pruned == ["ScaledObject/demo-stream"]
    assert kube.has(HPA, NS, "demo-stream")
    assert not kube.has(SCALED_OBJECT, NS, "demo-stream")
    # Turning autoscaling off removes the scaler and gives the count back to spec.replicas.
    scaling["enabled"] = False
    new = crdschema.platform(body, name="demo", namespace=NS)
    new["status"] = kube.platform(NS, "demo")["status"]
    kube.add_platform(new)
    result = run(kube)
    assert result.pruned == ["HorizontalPodAutoscaler/demo-stream"]
    assert kube.child("Deployment", NS, "demo-stream")["spec"]["replicas"] == 2
    assert (condition(kube)["status"], condition(kube)["reason"]) == ("False", "Disabled")


@pytest.mark.parametrize(
    ("apis", "kind", "plural", "failing"),
    [
        (
            CUSTOM,
            HPA,
            "horizontalpodautoscalers",
            {
                "type": "ScalingActive",
                "status": "False",
                "reason": "FailedGetPodsMetric",
                "message": "the HPA was unable to compute the replica count: no metrics returned",
            },
        ),
        (
            KEDA,
            SCALED_OBJECT,
            "scaledobjects",
            {
                "type": "Ready",
                "status": "False",
                "reason": "ScaledObjectCheckFailed",
                "message": "Triggers defined in ScaledObject are not working correctly",
            },
        ),
    ],
    ids=["hpa", "scaledobject"],
)
def test_a_scaler_that_cannot_read_its_metrics_is_not_ready(
    apis: MetricsApis, kind: str, plural: str, failing: dict[str, str]
) -> None:
    kube = setup(apis, **WITH_ADDRESS)
    reconciler = Reconciler(kube, now=lambda: T0)
    run(kube, reconciler)
    assert (condition(kube)["status"], condition(kube)["reason"]) == ("True", kind)
    working = {**failing, "status": "True", "reason": "ValidMetricFound"}
    kube.objects[(plural, NS, "demo-stream")]["status"] = {"conditions": [working]}
    run(kube, reconciler)
    assert condition(kube)["status"] == "True"
    kube.objects[(plural, NS, "demo-stream")]["status"] = {"conditions": [failing]}
    run(kube, reconciler)
    found = condition(kube)
    assert (found["status"], found["reason"]) == ("False", failing["reason"])
    assert found["message"].endswith(
        f"but the {kind} reports {failing['type']}=False ({failing['reason']}): "
        f"{failing['message']}"
    )
    assert kube.reasons().count(failing["reason"]) == 1  # a Warning Event, once


def test_without_keda_scaled_objects_are_not_listed() -> None:
    kube = setup(NOTHING)
    kube.fail[("list", SCALED_OBJECT)] = KubeError(404, "NotFound", "the server could not find")
    result = run(kube)
    assert result.error is None


def test_a_failed_metrics_discovery_changes_nothing_and_says_unknown() -> None:
    kube = setup(KEDA, **WITH_ADDRESS)
    reconciler = Reconciler(kube, now=lambda: T0)
    run(kube, reconciler)
    kube.metrics_discovery_error = KubeError(500, "InternalError", "etcd is sad")
    kube.writes.clear()
    result = run(kube, reconciler)
    assert result.reason == "DiscoveryFailed"
    assert [w for w in kube.writes if not w[1].startswith("VideoPlatform/")] == []
    assert kube.has(SCALED_OBJECT, NS, "demo-stream")
    assert (condition(kube)["status"], condition(kube)["reason"]) == ("Unknown", "DiscoveryFailed")


def test_the_warning_is_recorded_once_not_on_every_pass() -> None:
    kube = setup(NOTHING, **BOTH)
    reconciler = Reconciler(kube, now=lambda: T0)
    run(kube, reconciler)
    run(kube, reconciler)
    assert kube.reasons().count("MetricsAPIMissing") == 1


# -- discovery -----------------------------------------------------------------------------------


def test_discovery_reads_keda_and_the_metric_names_the_adapters_serve() -> None:
    kube = Kube(client.ApiClient(client.Configuration()))
    answers: dict[str, Any] = {
        "/apis/keda.sh/v1alpha1": {"resources": [{"name": "scaledobjects"}]},
        "/apis/custom.metrics.k8s.io/v1beta2": {
            "resources": [
                {"name": "pods/vod_http_requests_in_flight"},
                {"name": "namespaces/vod_http_requests_in_flight"},
            ]
        },
        "/apis/external.metrics.k8s.io/v1beta1": KubeError(503, "ServiceUnavailable", "down"),
    }

    def request(method: str, path: str, **_: Any) -> dict[str, Any]:
        answer = answers[path]
        if isinstance(answer, KubeError):
            raise answer
        return answer  # type: ignore[no-any-return]

    kube._request = request  # type: ignore[method-assign]
    assert kube.metrics_apis() == MetricsApis(
        keda=True, custom=frozenset({IN_FLIGHT}), external=frozenset()
    )
    answers["/apis/keda.sh/v1alpha1"] = KubeError(404, "NotFound", "absent")
    assert kube.metrics_apis().keda is True  # cached for the discovery TTL
    kube._metrics_discovery = None
    assert kube.metrics_apis().keda is False
    answers["/apis/keda.sh/v1alpha1"] = KubeError(403, "Forbidden", "no")
    kube._metrics_discovery = None
    with pytest.raises(KubeError):
        kube.metrics_apis()
