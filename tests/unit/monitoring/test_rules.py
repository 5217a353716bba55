"""The alert rules as a set: labels, annotations and runbooks every alert must carry, the metric
names of the contract (monitoring/README.md) and nothing else, and which alerts a platform's
features bring."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.monitoring import rules
from tests.unit.operator import crdschema
from vod_operator import monitoring
from vod_operator.render import RenderInputs, render

pytestmark = pytest.mark.unit

SEVERITIES = {"critical", "warning", "info"}
CONTRACT = rules.ROOT / "monitoring" / "README.md"
#: Prometheus' own series and PromQL words that look like metric names in an expression.
PROMQL_WORDS = {
    "by", "on", "and", "or", "unless", "ignoring", "group_left", "sum", "max", "min", "rate",
    "increase", "absent", "deriv", "min_over_time", "histogram_quantile", "le", "up",
}  # fmt: skip


def _operator_alerts() -> list[dict[str, Any]]:
    return rules.alerts(yaml.safe_load(rules.OPERATOR_RULES.read_text())["groups"])


def _platform_rules(platform: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [r for g in rules.platform_rule(platform)["spec"]["groups"] for r in g["rules"]]


def _example_platforms() -> list[dict[str, Any]]:
    return [crdschema.example_platform(n) for n in ("demo", "showcase", "library")]


def _all_alerts() -> list[dict[str, Any]]:
    platform = [r for p in _example_platforms() for r in _platform_rules(p) if "alert" in r]
    sample = [r for r in _platform_rules() if "alert" in r]
    return platform + sample + _operator_alerts()


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    for alert in _all_alerts():
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert["alert"]
        assert annotations["summary"].strip()
        assert annotations["description"].strip()


def test_every_platform_alert_carries_namespace_and_platform() -> None:
    for rule in _platform_rules():
        if "alert" in rule:
            labels = rule["labels"]
            assert (labels["namespace"], labels["platform"]) == (rules.NAMESPACE, rules.NAME)


def test_every_runbook_url_maps_to_a_runbook_file() -> None:
    base = monitoring.DEFAULT_RUNBOOK_BASE_URL
    names = set()
    for alert in _all_alerts():
        url = alert["annotations"]["runbook_url"]
        assert url == f"{base}{alert['alert']}.md", url
        assert (rules.RUNBOOKS / url.removeprefix(base)).is_file(), url
        names.add(alert["alert"])
    runbooks = {p.stem for p in rules.RUNBOOKS.glob("*.md")} - {"README"}
    assert runbooks == names, "a runbook without an alert, or the reverse"


def test_runbook_index_lists_every_runbook() -> None:
    index = (rules.RUNBOOKS / "README.md").read_text()
    for path in rules.RUNBOOKS.glob("*.md"):
        if path.name != "README.md":
            assert f"]({path.name})" in index, path.name


def test_runbooks_have_the_four_sections() -> None:
    for path in rules.RUNBOOKS.glob("*.md"):
        if path.name == "README.md":
            continue
        headings = re.findall(r"(?m)^## (.+)$", path.read_text())
        assert headings[:4] == ["Symptom", "Likely causes", "Commands", "Fix"], path.name


def test_runbook_base_url_is_a_setting() -> None:
    platform = rules.sample_platform()
    base = "https://runbooks.example.com/vod/"
    docs = render(platform, RenderInputs(monitoring_available=True, runbook_base_url=base))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    urls = {a["annotations"]["runbook_url"] for a in rules.alerts(rule["spec"]["groups"])}
    assert urls
    assert all(u.startswith(base) and u.endswith(".md") for u in urls)


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=(?!=))", without_strings))
    grouping = set()
    for group in re.findall(r"(?:by|on|ignoring)\s*\(([^)]*)\)", without_strings):
        grouping |= {w.strip() for w in group.split(",")}
    return words - labels - grouping - PROMQL_WORDS


def test_rules_use_only_the_contracts_metric_names() -> None:
    contract = CONTRACT.read_text()
    documented = set(re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", contract))
    recorded = {r["record"] for r in _platform_rules() if "record" in r}
    used = set()
    for rule in [*_platform_rules(), *_operator_alerts()]:
        used |= _metric_names(rule["expr"])
    series = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used - recorded}
    assert series - documented == set()
    assert {"vod_operator_build_info", "vod_assets", "workqueue_depth"} <= series
    assert recorded
    assert all(re.fullmatch(r"namespace_platform:[a-z0-9_]+:ratio_rate\w+", r) for r in recorded)


FEATURE_ALERTS = {
    "VideoPlatformOriginUnavailable",
    "VideoPlatformOriginObjectsChanged",
    "VideoPlatformCacheHitRatioCollapse",
    "VideoPlatformAutoscalingAtMax",
}


def _alert_names(platform: dict[str, Any]) -> set[str]:
    return {r["alert"] for r in _platform_rules(platform) if "alert" in r}


def test_feature_alerts_follow_the_features() -> None:
    """Origin alerts need a remote origin, the cache alert a cache, the HPA alert autoscaling."""
    local = _alert_names(crdschema.example_platform("demo"))
    assert not local & FEATURE_ALERTS
    sample = _alert_names(rules.sample_platform())
    assert local | FEATURE_ALERTS == sample
    uncached = rules.sample_platform()
    uncached["spec"]["cache"]["enabled"] = False
    assert _alert_names(uncached) == sample - {"VideoPlatformCacheHitRatioCollapse"}


def _fors(platform: dict[str, Any]) -> dict[str, str]:
    """Alert (with its burn window) -> its rendered `for`."""
    alerts = (r for r in _platform_rules(platform) if "alert" in r)
    return {r["alert"] + str(r["labels"].get("long")): r["for"] for r in alerts}


def test_time_scale_multiplies_every_for() -> None:
    base = _fors(rules.sample_platform())
    platform = rules.sample_platform()
    platform["spec"]["monitoring"]["alerts"]["timeScale"] = 0.1
    scaled = _fors(platform)
    assert scaled.keys() == base.keys()
    for key, duration in base.items():
        expected = max(1, round(monitoring.parse_duration(duration) * 0.1))
        assert monitoring.parse_duration(scaled[key]) == expected, key
    assert scaled["VideoPlatformDownNone"] == "12s"
    assert scaled["VideoPlatformLatencyBudgetBurn3d"] == "18m"


def test_slo_settings_reach_the_burn_rate_rules() -> None:
    platform = rules.sample_platform()
    platform["spec"]["monitoring"]["slo"] = {
        "availability": {"targetPercent": 99.9},
        "latency": {"thresholdSeconds": 1, "targetPercent": 95},
    }
    rendered = _platform_rules(platform)
    exprs = {
        r.get("record") or f"{r['alert']}/{r['labels'].get('long')}": r["expr"] for r in rendered
    }
    assert "(14.4 * 0.001)" in exprs["VideoPlatformAvailabilityBudgetBurn/1h"]
    assert "(6 * 0.05)" in exprs["VideoPlatformLatencyBudgetBurn/6h"]
    assert 'le="1.0"' in exprs["namespace_platform:vod_http_media_requests_slow:ratio_rate5m"]
