"""spec.monitoring: its CRD defaults and validation, the ServiceMonitor it renders, and the pure
helpers behind the PrometheusRule (durations, the `for` scale, budgets, bucket labels)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tests.unit.operator import crdschema
from tests.unit.operator.test_crd import _json_schema
from tests.unit.operator.update_golden import KEYS
from vod_operator import monitoring
from vod_operator.render import RenderInputs, render

pytestmark = pytest.mark.unit


def _service_monitor(platform: dict[str, Any]) -> dict[str, Any]:
    docs = render(platform, RenderInputs(signing_keys=KEYS, monitoring_available=True))
    return next(d for d in docs if d["kind"] == "ServiceMonitor")


def test_defaults() -> None:
    spec = crdschema.platform({"storage": {"pvc": {"claimName": "videos"}}})["spec"]
    assert spec["monitoring"] == {
        "enabled": True,
        "scrapeInterval": "30s",
        "alerts": {"timeScale": 1},
        "slo": {
            "availability": {"targetPercent": 99.5},
            "latency": {"thresholdSeconds": 2.5, "targetPercent": 99},
        },
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("scrapeInterval",), "30"),
        (("scrapeInterval",), "1h"),
        (("alerts", "timeScale"), 0),
        (("alerts", "timeScale"), 11),
        (("slo", "availability", "targetPercent"), 100),
        (("slo", "latency", "targetPercent"), 90),
    ],
)
def test_schema_refuses(field: tuple[str, ...], value: object) -> None:
    body = crdschema.example_platform("demo")
    node = body["spec"]["monitoring"]
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _json_schema(crdschema.schema()))


def test_cel_rules_bound_the_interval_and_the_threshold() -> None:
    """The rules the API server evaluates (the OpenAPI part above cannot express them)."""
    props = crdschema.schema()["properties"]["spec"]["properties"]["monitoring"]["properties"]
    interval = props["scrapeInterval"]["x-kubernetes-validations"][0]["rule"]
    assert interval == "duration(self) >= duration('1s') && duration(self) <= duration('1m')"
    latency = props["slo"]["properties"]["latency"]["properties"]["thresholdSeconds"]
    rule = latency["x-kubernetes-validations"][0]["rule"]
    bounds = [float(b) for b in rule.split("[")[1].rstrip("]").split(",")]
    # Every allowed threshold is a bucket bound the streaming pods expose.
    buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
    assert set(bounds) <= set(buckets)
    assert latency["default"] in bounds


def test_service_monitor_sets_platform_and_interval() -> None:
    platform = crdschema.example_platform("showcase")
    platform["spec"]["monitoring"]["scrapeInterval"] = "5s"
    endpoint = _service_monitor(platform)["spec"]["endpoints"][0]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "5s",
        "scrapeTimeout": "5s",
        "relabelings": [
            {
                "action": "replace",
                "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
                "targetLabel": "platform",
            }
        ],
    }
    # The label the relabelling reads is on the Service the ServiceMonitor selects.
    docs = render(platform, RenderInputs(signing_keys=KEYS, monitoring_available=True))
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["metadata"]["labels"]["app.kubernetes.io/instance"] == "showcase"
    selector = _service_monitor(platform)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_scrape_timeout_never_exceeds_the_interval() -> None:
    assert [monitoring.scrape_timeout(i) for i in ("1s", "5s", "10s", "30s", "1m")] == [
        "1s",
        "5s",
        "10s",
        "10s",
        "10s",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1, "1s"), (90, "1m30s"), (3600, "1h"), (10800, "3h"), (90061, "1d1h1m1s")],
)
def test_durations_round_trip(seconds: int, text: str) -> None:
    assert monitoring.format_duration(seconds) == text
    assert monitoring.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "1.5m", "m", "10ms"])
def test_parse_duration_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        monitoring.parse_duration(bad)


@pytest.mark.parametrize(
    ("base", "scale", "expected"),
    [
        ("2m", 1, "2m"),
        ("2m", 0.1, "12s"),
        ("15m", 0.5, "7m30s"),
        ("3h", 2, "6h"),
        ("5m", 0.001, "1s"),
    ],
)
def test_scaled_for(base: str, scale: float, expected: str) -> None:
    assert monitoring.scaled(base, scale) == expected


@pytest.mark.parametrize(
    ("base", "scale", "interval", "expected"),
    [
        ("5m", 1, "30s", "5m"),  # the documented window
        ("5m", 0.1, "5s", "30s"),  # scaled like the `for`
        ("5m", 0.01, "5s", "20s"),  # never below four scrapes
        ("15m", 2, "1m", "30m"),
    ],
)
def test_threshold_windows_scale_with_time_but_hold_four_scrapes(
    base: str, scale: float, interval: str, expected: str
) -> None:
    assert monitoring.rate_window(base, scale, interval) == expected


def test_scaled_time_reaches_the_rendered_windows() -> None:
    from tests.unit.monitoring.rules import alerts, platform_rule, sample_platform

    platform = sample_platform()
    platform["spec"]["monitoring"]["alerts"]["timeScale"] = 0.1
    platform["spec"]["monitoring"]["scrapeInterval"] = "5s"
    rules = {r["alert"]: r for r in alerts(platform_rule(platform)["spec"]["groups"])}
    assert "[30s]" in rules["VideoPlatformHigh5xxRatio"]["expr"]
    assert "[30s]" in rules["VideoPlatformOriginUnavailable"]["expr"]
    assert "[1m30s]" in rules["VideoPlatformOriginObjectsChanged"]["expr"]
    assert "[5m]" not in rules["VideoPlatformUploadsFailing"]["expr"]


def test_budgets_and_bucket_labels_print_like_prometheus_reads_them() -> None:
    assert [monitoring.budget(t) for t in (99.5, 99, 99.9, 99.99, 95)] == [
        "0.005",
        "0.01",
        "0.001",
        "0.0001",
        "0.05",
    ]
    # The streaming pods expose le="1.0", le="2.5", le="0.25" (Python's float repr).
    assert [monitoring.bucket_label(b) for b in (1, 2.5, 0.25, 10)] == [
        "1.0",
        "2.5",
        "0.25",
        "10.0",
    ]
    assert monitoring.number(14.4) == "14.4"
    assert monitoring.days_of_budget(14.4) == "2.1"
