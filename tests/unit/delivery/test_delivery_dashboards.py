"""The Grafana dashboards: generated from tools/vod_delivery/dashboards.py and never stale, every
query valid PromQL for the real Prometheus parser (promtool), every metric and label from the
contract (monitoring/README.md), every platform query bound to one platform, and the kustomize
component shipping them unchanged as ConfigMaps for the Grafana sidecar."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.delivery.test_delivery_sync import fake_repo
from vod_delivery import dashboards, project, sync

pytestmark = pytest.mark.unit

PROMTOOL = "/usr/bin/promtool"
CONTRACT = project.ROOT / "monitoring" / "README.md"
MODELS = {d.file: dashboards.render(d) for d in dashboards.dashboards()}
#: Values for every variable, as a person picking one platform would give them.
PICKED = {
    "namespace": "media",
    "platform": "demo",
    "job": "vod-operator-metrics",
    "instance": ".+",
}


def all_queries() -> list[dashboards.PanelQuery]:
    return [q for model in MODELS.values() for q in dashboards.panel_queries(model, PICKED)]


# -- generated, and never stale ---------------------------------------------------------------


def test_committed_dashboards_are_the_generated_ones() -> None:
    assert dashboards.stale() == [], "monitoring/dashboards is stale: run `make dashboards`"
    files = sorted(p.name for p in dashboards.DASHBOARDS_DIR.glob("*.json"))
    assert files == ["vod-operator.json", "vod-platform.json"]


def test_a_stale_dashboard_is_found_and_rewritten(tmp_path: Path) -> None:
    assert dashboards.write(tmp_path) == [
        tmp_path / "vod-platform.json",
        tmp_path / "vod-operator.json",
    ]
    assert dashboards.stale(tmp_path) == []
    edited = tmp_path / "vod-operator.json"
    edited.write_text(edited.read_text().replace("Reconciles", "Reconcile", 1))
    assert dashboards.stale(tmp_path) == [edited]
    assert dashboards.write(tmp_path) == [edited]
    assert dashboards.stale(tmp_path) == []


def test_the_models_are_what_grafana_and_its_sidecar_load() -> None:
    for name, model in MODELS.items():
        assert json.loads((dashboards.DASHBOARDS_DIR / name).read_text()) == model
        assert model["schemaVersion"] == dashboards.SCHEMA_VERSION
        assert model["uid"] == name.removesuffix(".json")
        source, *queried = model["templating"]["list"]
        assert (source["name"], source["type"], source["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )
        names = [v["name"] for v in queried]
        assert {"namespace", "platform"} <= set(names), name
        for variable in queried:
            assert variable["type"] == "query"
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert re.fullmatch(rf"label_values\(.+, {variable['name']}\)", variable["definition"])
            assert variable["query"]["query"] == variable["definition"]


def test_every_panel_has_a_title_description_unit_and_the_templated_datasource() -> None:
    for model in MODELS.values():
        ids = [panel["id"] for panel in model["panels"]]
        assert len(set(ids)) == len(ids)
        for panel in model["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["type"] in {"timeseries", "stat"}
            assert panel["title"]
            assert panel["description"].endswith("."), panel["title"]
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            assert panel["datasource"] == dashboards.DATASOURCE
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == dashboards.DATASOURCE
                # rates over Grafana's window (at least 4 scrapes); increases over the range
                windows = set(re.findall(r"\[([^\]]+)\]", target["expr"]))
                assert windows <= {"$__rate_interval", "$__range"}, target["expr"]


def test_panels_do_not_overlap_and_fit_the_grid() -> None:
    for model in MODELS.values():
        cells: set[tuple[int, int]] = set()
        for panel in model["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= dashboards.GRID_WIDTH
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & mine, panel["title"]
            cells |= mine


def test_the_brief_panels_are_there() -> None:
    platform = {p["title"] for p in MODELS["vod-platform.json"]["panels"]}
    assert {
        "Requests by status class",
        "Egress",
        "Media request duration",
        "In-flight requests",
        "Cache byte-hit ratio",
        "Origin requests",
        "Origin errors by cause",
        "Uploaded bytes",
        "Upload failures by reason",
        "Streaming pods",
        "VideoAssets by phase",
        "Packaging time",
    } <= platform
    operator = {p["title"] for p in MODELS["vod-operator.json"]["panels"]}
    assert {
        "Reconciles by controller and result",
        "Reconcile errors",
        "Queue depth",
        "Queue wait",
        "Work duration",
        "API requests by code and method",
        "Build",
    } <= operator


# -- the queries: valid PromQL, the contract's names, one platform ---------------------------


def promtool_check(expressions: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on recording rules `record: expr`: Prometheus' own parser."""
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": name, "expr": expr} for name, expr in expressions.items()],
            }
        ]
    }
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def test_every_query_parses_with_prometheus_own_parser(tmp_path: Path) -> None:
    queries = all_queries()
    assert len(queries) >= 40
    expressions = {f"dashboard:query_{i}": q.expr for i, q in enumerate(queries)}
    # and the selector inside each variable's label_values(...)
    for model in MODELS.values():
        for name, query in dashboards.variable_queries(model).items():
            selector = query.removeprefix("label_values(").rsplit(",", 1)[0]
            expressions[f"dashboard:variable_{name}"] = dashboards.substitute(selector, PICKED)
    result = promtool_check(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_promtool_check_refuses_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: a query missing a parenthesis is refused, naming the error."""
    broken = all_queries()[0].expr.rstrip(")")
    result = promtool_check({"dashboard:broken": broken}, tmp_path)
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


#: The Prometheus Operator's target labels on a streaming pod's series (the contract's prose).
TARGET_LABELS = {
    "namespace",
    "platform",
    "job",
    "service",
    "pod",
    "container",
    "endpoint",
    "instance",
}


def contract() -> tuple[set[str], set[str]]:
    """The metric names and label names monitoring/README.md lists."""
    text = CONTRACT.read_text()
    names = set(
        re.findall(r"`((?:vod|controller_runtime|workqueue|rest_client|leader_election)_\w+)", text)
    )
    labels = set(TARGET_LABELS)
    # table rows: | `series`, ... | label (values), label | meaning |
    for column in re.findall(r"^\| `[^|]+\| ([^|]*) \|", text, re.MULTILINE):
        labels |= {w.strip() for w in re.sub(r"\([^)]*\)", "", column).split(",") if w.strip()}
    # the operator's series: `name{label, label}`
    for braces in re.findall(r"`\w+\{([^}]*)\}`", text):
        labels |= {label.strip() for label in braces.split(",")}
    return names, labels


SELECTOR = re.compile(r"\b([a-z_:][a-z0-9_:]*)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without) \(([^)]*)\)")


def test_metric_and_label_names_are_the_contracts() -> None:
    names, labels = contract()
    assert {"vod_http_requests_total", "workqueue_depth", "vod_assets"} <= names
    assert {"route", "status_class", "cause", "reason", "controller", "code", "phase"} <= labels
    used_names: set[str] = set()
    used_labels: set[str] = set()
    for query in all_queries():
        for metric, matchers in SELECTOR.findall(query.expr):
            histogram = re.sub(r"_(bucket|count|sum)$", "", metric)
            used_names.add(metric if metric in names else histogram)
            used_labels |= {m.split("=")[0].strip(" !~") for m in matchers.split(",")}
        for grouping in GROUPING.findall(query.expr):
            used_labels |= {label.strip() for label in grouping.split(",")}
    assert used_names - names == set()
    assert used_labels - labels - {"le"} == set()
    # every series of the contract's streaming pods and operator has a panel
    assert names - used_names == set()


def test_every_platform_query_selects_one_platform() -> None:
    """Bounded cardinality: each selector of the platform dashboard names the namespace and
    the platform; groupings use only labels with a small fixed set of values (or pods)."""
    model = MODELS["vod-platform.json"]
    for query in dashboards.panel_queries(model, PICKED):
        selectors = SELECTOR.findall(query.expr)
        assert selectors, query.expr
        for _, matchers in selectors:
            assert 'namespace="media"' in matchers, query.expr
            assert 'platform="demo"' in matchers, query.expr
        for grouping in GROUPING.findall(query.expr):
            assert set(grouping.replace(" ", "").split(",")) <= {
                "le", "route", "method", "status_class", "kind", "result", "cause", "reason",
                "phase", "pod",
            }, query.expr  # fmt: skip


def test_operator_queries_select_the_operator_by_job_and_instance() -> None:
    model = MODELS["vod-operator.json"]
    for query in dashboards.panel_queries(model, PICKED):
        for _, matchers in SELECTOR.findall(query.expr):
            assert 'job=~"vod-operator-metrics"' in matchers, query.expr
            assert 'instance=~".+"' in matchers, query.expr
    job = next(v for v in model["templating"]["list"] if v["name"] == "job")
    assert job["includeAll"] is False  # `.+` would take in any controller-runtime operator
    assert job["definition"] == "label_values(vod_operator_build_info, job)"


def test_every_panel_needs_a_known_scenario_and_every_scenario_is_needed() -> None:
    needs = [p.needs for d in dashboards.dashboards() for p in d.panels()]
    assert set(needs) == set(dashboards.SCENARIOS)


# -- variables given values -----------------------------------------------------------------


def test_variables_and_grafana_globals_are_substituted() -> None:
    model: dict[str, Any] = {
        "title": "T",
        "panels": [
            {"type": "row", "title": "r", "panels": [
                {"title": "inner", "targets": [{"refId": "A", "expr": "x{a=\"$a\"}"}]},
            ]},
            {"title": "p", "targets": [
                {"refId": "A", "expr": 'rate(m{a="${a}", b=~"[[b]]"}[$__rate_interval])'},
                {"refId": "B", "expr": 'increase(m{a="${a:regex}"}[$__range])'},
            ]},
        ],
    }  # fmt: skip
    found = dashboards.panel_queries(model, {"a": "one", "b": "two|three"}, "2m", "15m")
    assert [(q.panel, q.ref, q.expr) for q in found] == [
        ("inner", "A", 'x{a="one"}'),
        ("p", "A", 'rate(m{a="one", b=~"two|three"}[2m])'),
        ("p", "B", 'increase(m{a="one"}[15m])'),
    ]


def test_an_unknown_variable_is_named() -> None:
    with pytest.raises(KeyError, match=r"\$missing"):
        dashboards.substitute('up{x="$missing"}', {})


def test_every_variable_of_every_query_has_a_value_once_picked() -> None:
    for query in all_queries():
        assert "$" not in query.expr, query.expr
        assert "[[" not in query.expr, query.expr


# -- shipped by kustomize (the chart: tests/cluster/test_install_chart.py, it needs helm) ----


def dashboard_configmaps(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ConfigMaps labelled for the Grafana sidecar, by the file each one carries."""
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc.get("kind") != "ConfigMap":
            continue
        if doc["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            continue
        (file,) = doc["data"]
        found[file] = doc
    return found


def expected_dashboard_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(dashboards.DASHBOARDS_DIR.glob("*.json"))}


def kustomize_with_monitoring(tmp_path: Path) -> list[dict[str, Any]]:
    """The default overlay plus the monitoring component, as an overlay adds it."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    manifests = project.MANIFESTS_DIR
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(manifests / "overlays" / "default", overlay)],
                "components": [os.path.relpath(manifests / "components" / "monitoring", overlay)],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomize_component_ships_each_dashboard_unchanged(tmp_path: Path) -> None:
    found = dashboard_configmaps(kustomize_with_monitoring(tmp_path))
    files = expected_dashboard_files()
    assert {name: cm["data"][name] for name, cm in found.items()} == files
    for name, cm in found.items():
        stem = name.removesuffix(".json")
        assert cm["metadata"]["name"] == f"vod-operator-dashboard-{stem}"
        assert cm["metadata"]["namespace"] == "vod-operator-system"


def test_dashboard_copies_follow_the_source_and_stale_ones_go(tmp_path: Path) -> None:
    root = fake_repo(tmp_path)
    source = root / "monitoring" / "dashboards" / "vod-platform.json"
    source.write_text(source.read_text().replace("Egress", "Egress bytes", 1))
    (root / "charts/vod-operator/files/dashboards/old.json").write_text("{}\n")
    assert set(sync.check(root)) == {
        "charts/vod-operator/files/dashboards/vod-platform.json",
        "manifests/components/monitoring/dashboards/vod-platform.json",
        "charts/vod-operator/files/dashboards/old.json",
    }
    sync.apply(root)
    assert sync.check(root) == []
    for copy in (
        root / "charts/vod-operator/files/dashboards/vod-platform.json",
        root / "manifests/components/monitoring/dashboards/vod-platform.json",
    ):
        assert copy.read_text() == source.read_text()
    assert not (root / "charts/vod-operator/files/dashboards/old.json").exists()
