"""The Grafana dashboards, as data: one function per dashboard builds its rows of panels, `render`
turns one into Grafana's JSON model, and `panel_queries` lists what every panel asks Prometheus
once the dashboard's variables have values (what the tests run against promtool and a real
Prometheus).

Metric names and labels come only from monitoring/README.md (the contract). The platform
dashboard selects one platform by the `namespace` and `platform` labels; the operator dashboard
selects the operator by `job` and `instance` (the jobs exposing `vod_operator_build_info`, so a
controller-runtime operator scraped beside it never mixes in) and its per-platform series by
`namespace` and `platform`.

`make dashboards` writes monitoring/dashboards/*.json; a unit test fails when they are stale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vod_delivery import project

#: Grafana 11.6 and 12.x write this schema version.
SCHEMA_VERSION = 41
DASHBOARDS_DIR = project.ROOT / "monitoring" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_HEIGHT = 8
GRID_WIDTH = 24

# What makes a panel's series exist; the cluster test produces each one (see Panel.needs).
TRAFFIC = "traffic"  # requests answered by a platform's streaming pods
RANGE = "range"  # a GET with a Range header
REMOTE_ORIGIN = "remote_origin"  # media read through the slice cache of a remote-origin platform
UPLOAD = "upload"  # a PUT (or tus) upload stored
UPLOAD_FAILURE = "upload_failure"  # an upload refused (e.g. too large)
OPERATOR = "operator"  # the operator reconciling a platform (its own /metrics scraped)
AUTOSCALING = "autoscaling"  # spec.autoscaling.enabled on the platform
ASSET_READY = "asset_ready"  # a VideoAsset packaged to Ready while the operator watched
SCENARIOS = (
    TRAFFIC,
    RANGE,
    REMOTE_ORIGIN,
    UPLOAD,
    UPLOAD_FAILURE,
    OPERATOR,
    AUTOSCALING,
    ASSET_READY,
)


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel and its legend (`{{label}}` placeholders)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A panel: a timeseries unless `stat`; `unit` is one of Grafana's unit ids."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    needs: str = TRAFFIC
    width: int = 8
    stat: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A query variable: `label_values(selector, label)`, refreshed when the time range changes.

    `multi`: several values may be picked; `include_all` adds "All" (allValue `.+`).
    """

    name: str
    label: str
    selector: str
    multi: bool = False
    include_all: bool = False

    @property
    def query(self) -> str:
        return f"label_values({self.selector}, {self.name})"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    file: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("vod-operator",))

    def panels(self) -> Iterator[Panel]:
        for row in self.rows:
            yield from row.panels


# -- the platform dashboard -----------------------------------------------------------------

#: Every series of the platform dashboard is one platform's.
ONE_PLATFORM = 'namespace="$namespace", platform="$platform"'
FIVE_XX = 'status_class="5xx"'
HIT = 'result="hit"'
MEDIA = 'route="media"'
#: PUT uploads, tus' POST (create) and PATCH (append).
UPLOAD_METHODS = 'method=~"PUT|POST|PATCH"'


def sel(metric: str, *matchers: str, base: str = ONE_PLATFORM) -> str:
    """`metric{base, matchers...}`."""
    return f"{metric}{{{', '.join([base, *matchers])}}}"


def rate(metric: str, *matchers: str, base: str = ONE_PLATFORM) -> str:
    return f"rate({sel(metric, *matchers, base=base)}[$__rate_interval])"


def quantiles(
    histogram: str, by: str = "", *matchers: str, base: str = ONE_PLATFORM, legend: str = ""
) -> tuple[Query, ...]:
    """p50, p90 and p99 of a histogram over the rate window (grouped `by` labels as well)."""
    group = ", ".join(["le", *([by] if by else [])])
    inner = f"sum by ({group}) ({rate(histogram + '_bucket', *matchers, base=base)})"
    prefix = f"{legend} " if legend else ""
    return tuple(
        Query(f"histogram_quantile({q}, {inner})", f"{prefix}p{round(q * 100)}")
        for q in (0.5, 0.9, 0.99)
    )


def platform_dashboard() -> Dashboard:
    """One VideoPlatform: its traffic, latency, cache and origin, uploads, pods and assets."""
    requests = "vod_http_requests_total"
    traffic = Row(
        "Requests",
        (
            Panel(
                "Requests by status class",
                "Requests answered by the platform's streaming pods per second, by status class.",
                "reqps",
                (Query(f"sum by (status_class) ({rate(requests)})", "{{status_class}}"),),
            ),
            Panel(
                "5xx ratio",
                "Share of requests answered with a 5xx status (0 when there were none).",
                "percentunit",
                (
                    Query(
                        f"(sum({rate(requests, FIVE_XX)}) or vector(0)) / sum({rate(requests)})",
                        "5xx",
                    ),
                ),
            ),
            Panel(
                "Egress",
                "Response body bytes sent per second, by route (media is what viewers watch).",
                "binBps",
                (
                    Query(
                        f"sum by (route) ({rate('vod_http_response_body_bytes_total')})",
                        "{{route}}",
                    ),
                ),
            ),
        ),
    )
    latency = Row(
        "Latency and load",
        (
            Panel(
                "Media request duration",
                "From request headers to the last body byte handed to the kernel, media route: "
                "for a playlist or a segment this bounds the time to first byte.",
                "s",
                quantiles("vod_http_request_duration_seconds", "", MEDIA),
            ),
            Panel(
                "p99 duration by route",
                "99th percentile of the request duration, per route.",
                "s",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le, route) "
                        f"({rate('vod_http_request_duration_seconds_bucket')}))",
                        "{{route}}",
                    ),
                ),
            ),
            Panel(
                "In-flight requests",
                "Requests being handled right now, per streaming pod.",
                "short",
                (Query(f"sum by (pod) ({sel('vod_http_requests_in_flight')})", "{{pod}}"),),
            ),
            Panel(
                "Range requests by kind",
                "GET requests with a Range header per second, by how they were answered "
                "(single, suffix, multi, unsatisfiable, ignored).",
                "reqps",
                (Query(f"sum by (kind) ({rate('vod_range_requests_total')})", "{{kind}}"),),
                needs=RANGE,
            ),
            Panel(
                "Send timeouts",
                "Responses cut per second because the client read nothing for the send timeout.",
                "reqps",
                (Query(f"sum({rate('vod_send_timeouts_total')})", "cut"),),
            ),
            Panel(
                "Descriptors exhausted",
                "Requests and connections answered 503 per second because the server ran out "
                "of file descriptors (EMFILE/ENFILE).",
                "reqps",
                (Query(f"sum({rate('vod_fd_exhausted_total')})", "refused"),),
            ),
            Panel(
                "Access log records dropped",
                "Access log records dropped per second because the log writer fell behind.",
                "short",
                (Query(f"sum({rate('vod_access_log_dropped_total')})", "dropped"),),
            ),
        ),
    )
    cache = Row(
        "Slice cache and origin (remote origins)",
        (
            Panel(
                "Cache byte-hit ratio",
                "Share of media body bytes served from cached slices rather than fetched from "
                "the origin.",
                "percentunit",
                (
                    Query(
                        f"sum({rate('vod_cache_bytes_total', HIT)})"
                        f" / sum({rate('vod_cache_bytes_total')})",
                        "byte-hit ratio",
                    ),
                ),
                needs=REMOTE_ORIGIN,
            ),
            Panel(
                "Cache requests by result",
                "Media requests of the remote origin per second: hit (every byte from the cache) "
                "or miss.",
                "reqps",
                (Query(f"sum by (result) ({rate('vod_cache_requests_total')})", "{{result}}"),),
                needs=REMOTE_ORIGIN,
            ),
            Panel(
                "Origin requests",
                "Requests made to the origin for bytes per second (one per run of missing slices).",
                "reqps",
                (Query(f"sum({rate('vod_origin_requests_total')})", "origin requests"),),
                needs=REMOTE_ORIGIN,
            ),
            Panel(
                "Origin bytes",
                "Bytes received from the origin per second.",
                "binBps",
                (Query(f"sum({rate('vod_origin_bytes_total')})", "from origin"),),
                needs=REMOTE_ORIGIN,
            ),
            Panel(
                "Origin errors by cause",
                "Origin failures per second, by cause (not_found, unreachable, timeout, changed, "
                "truncated).",
                "reqps",
                (Query(f"sum by (cause) ({rate('vod_origin_errors_total')})", "{{cause}}"),),
                needs=REMOTE_ORIGIN,
            ),
        ),
    )
    uploads = Row(
        "Uploads (PUT and tus)",
        (
            Panel(
                "Upload requests",
                "PUT and tus requests per second, by route, method and status class.",
                "reqps",
                (
                    Query(
                        f"sum by (route, method, status_class) ({rate(requests, UPLOAD_METHODS)})",
                        "{{route}} {{method}} {{status_class}}",
                    ),
                ),
                needs=UPLOAD,
            ),
            Panel(
                "Uploaded bytes",
                "Bytes per second received in uploads that were stored.",
                "binBps",
                (Query(f"sum({rate('vod_upload_bytes_total')})", "stored"),),
                needs=UPLOAD,
            ),
            Panel(
                "Upload failures by reason",
                "Uploads per second that stored nothing, by reason (too_large, disconnected, "
                "timeout, no_space, checksum, origin, error).",
                "reqps",
                (Query(f"sum by (reason) ({rate('vod_upload_failures_total')})", "{{reason}}"),),
                needs=UPLOAD_FAILURE,
            ),
        ),
    )
    # The operator's per-platform series: `max` keeps one value when two replicas export them.
    pods = Row(
        "Pods and assets (the operator's view)",
        (
            Panel(
                "Streaming pods",
                "Ready and desired streaming pods (desired is what spec.replicas or the HPA "
                "asks) and the HPA's ceiling (maxReplicas) while autoscaling is on.",
                "short",
                (
                    Query(f"max({sel('vod_platform_replicas_ready')})", "ready"),
                    Query(f"max({sel('vod_platform_replicas_desired')})", "desired"),
                    Query(f"max({sel('vod_platform_autoscaling_max_replicas')})", "HPA max"),
                ),
                needs=AUTOSCALING,
            ),
            Panel(
                "Platform phase",
                "The VideoPlatform's status.phase.",
                "none",
                (Query(f"max by (phase) ({sel('vod_platform_phase')}) == 1", "{{phase}}"),),
                needs=OPERATOR,
                stat=True,
            ),
            Panel(
                "VideoAssets by phase",
                "The platform's VideoAssets by status.phase.",
                "short",
                (Query(f"max by (phase) ({sel('vod_assets')})", "{{phase}}"),),
                needs=OPERATOR,
            ),
            Panel(
                "Oldest asset in Processing",
                "Age of the oldest VideoAsset in Processing (0 when none).",
                "s",
                (Query(f"max({sel('vod_assets_processing_oldest_seconds')})", "oldest"),),
                needs=OPERATOR,
            ),
            Panel(
                "Packaging time",
                "From the packaging Job's start to Ready, for the assets that became Ready in "
                "the dashboard's time range: median and 90th percentile.",
                "s",
                tuple(
                    Query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(increase({sel('vod_asset_packaging_duration_seconds_bucket')}"
                        "[$__range])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.9)
                ),
                needs=ASSET_READY,
                stat=True,
            ),
            Panel(
                "Assets packaged",
                "VideoAssets that became Ready in the dashboard's time range.",
                "short",
                (
                    Query(
                        "sum(increase("
                        f"{sel('vod_asset_packaging_duration_seconds_count')}[$__range]))",
                        "packaged",
                    ),
                ),
                needs=ASSET_READY,
                stat=True,
            ),
        ),
    )
    return Dashboard(
        uid="vod-platform",
        title="VOD platform",
        description="One VideoPlatform: requests, egress, latency, slice cache and origin, "
        "uploads, streaming pods and VideoAssets.",
        file="vod-platform.json",
        variables=(
            Variable("namespace", "Namespace", "vod_http_requests_in_flight"),
            Variable("platform", "Platform", 'vod_http_requests_in_flight{namespace="$namespace"}'),
        ),
        rows=(traffic, latency, cache, uploads, pods),
    )


# -- the operator dashboard -----------------------------------------------------------------

THE_OPERATOR = 'job=~"$job", instance=~"$instance"'
ITS_PLATFORMS = f'{THE_OPERATOR}, namespace=~"$namespace", platform=~"$platform"'


def operator_dashboard() -> Dashboard:
    """The operator: reconciles, work queue, Kubernetes API calls, platforms and build."""

    def op_rate(metric: str) -> str:
        return rate(metric, base=THE_OPERATOR)

    def op_sel(metric: str) -> str:
        return sel(metric, base=THE_OPERATOR)

    reconciles = Row(
        "Reconciles",
        (
            Panel(
                "Reconciles by controller and result",
                "Reconciles per second, by controller (videoplatform, videoasset) and result "
                "(success, error, requeue, requeue_after).",
                "ops",
                (
                    Query(
                        "sum by (controller, result) "
                        f"({op_rate('controller_runtime_reconcile_total')})",
                        "{{controller}} {{result}}",
                    ),
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Reconcile errors",
                "Reconciles that returned an error, per second and controller.",
                "ops",
                (
                    Query(
                        "sum by (controller) "
                        f"({op_rate('controller_runtime_reconcile_errors_total')})",
                        "{{controller}}",
                    ),
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Reconcile duration",
                "How long one reconcile takes, by controller.",
                "s",
                quantiles(
                    "controller_runtime_reconcile_time_seconds",
                    "controller",
                    base=THE_OPERATOR,
                    legend="{{controller}}",
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Workers",
                "Reconciles running now, and the most that may run at once, by controller.",
                "short",
                (
                    Query(
                        f"sum by (controller) ({op_sel('controller_runtime_active_workers')})",
                        "{{controller}} active",
                    ),
                    Query(
                        "max by (controller) "
                        f"({op_sel('controller_runtime_max_concurrent_reconciles')})",
                        "{{controller}} max",
                    ),
                ),
                needs=OPERATOR,
            ),
        ),
    )
    queue = Row(
        "Work queue",
        (
            Panel(
                "Queue depth",
                "Objects waiting in each controller's work queue.",
                "short",
                (Query(f"sum by (name) ({op_sel('workqueue_depth')})", "{{name}}"),),
                needs=OPERATOR,
            ),
            Panel(
                "Queue adds and retries",
                "Objects added to each work queue per second, and those re-added to retry.",
                "ops",
                (
                    Query(f"sum by (name) ({op_rate('workqueue_adds_total')})", "{{name}} adds"),
                    Query(
                        f"sum by (name) ({op_rate('workqueue_retries_total')})",
                        "{{name}} retries",
                    ),
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Queue wait",
                "How long an object waits in the queue before a worker takes it.",
                "s",
                quantiles(
                    "workqueue_queue_duration_seconds", "name", base=THE_OPERATOR, legend="{{name}}"
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Work duration",
                "How long a worker spends on one object.",
                "s",
                quantiles(
                    "workqueue_work_duration_seconds", "name", base=THE_OPERATOR, legend="{{name}}"
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Unfinished work",
                "Seconds of work in progress not yet finished, and the longest-running worker: "
                "a value that keeps growing is a stuck reconcile.",
                "s",
                (
                    Query(
                        f"max by (name) ({op_sel('workqueue_unfinished_work_seconds')})",
                        "{{name}} unfinished",
                    ),
                    Query(
                        f"max by (name) ({op_sel('workqueue_longest_running_processor_seconds')})",
                        "{{name}} longest",
                    ),
                ),
                needs=OPERATOR,
            ),
        ),
    )
    api = Row(
        "Kubernetes API",
        (
            Panel(
                "API requests by code and method",
                "Requests the operator made to the Kubernetes API per second, by HTTP method and "
                "status code.",
                "reqps",
                (
                    Query(
                        f"sum by (method, code) ({op_rate('rest_client_requests_total')})",
                        "{{method}} {{code}}",
                    ),
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Leader election",
                "Replicas holding the leader Lease (1 when healthy: 0 means nobody reconciles) and "
                "replicas taking part, by Lease.",
                "short",
                (
                    Query(
                        f"sum by (name) ({op_sel('leader_election_master_status')})",
                        "{{name}} leaders",
                    ),
                    Query(
                        f"count by (name) ({op_sel('vod_operator_leader_election_info')})",
                        "{{name}} replicas",
                    ),
                ),
                needs=OPERATOR,
                stat=True,
            ),
            Panel(
                "Build",
                "Operator replicas by version.",
                "short",
                (
                    Query(
                        f"count by (version) ({op_sel('vod_operator_build_info')})", "{{version}}"
                    ),
                ),
                needs=OPERATOR,
                stat=True,
            ),
        ),
    )
    fleet = Row(
        "Platforms and assets",
        (
            Panel(
                "VideoPlatforms by phase",
                "VideoPlatforms of the selected namespaces by status.phase.",
                "short",
                (
                    Query(
                        "count by (phase) (max by (namespace, platform, phase) "
                        f"({sel('vod_platform_phase', base=ITS_PLATFORMS)}) == 1)",
                        "{{phase}}",
                    ),
                ),
                needs=OPERATOR,
                width=12,
            ),
            Panel(
                "VideoAssets by phase",
                "VideoAssets of the selected platforms by status.phase.",
                "short",
                (
                    Query(
                        "sum by (phase) (max by (namespace, platform, phase) "
                        f"({sel('vod_assets', base=ITS_PLATFORMS)}))",
                        "{{phase}}",
                    ),
                ),
                needs=OPERATOR,
                width=12,
            ),
        ),
    )
    build_info = "vod_operator_build_info"
    return Dashboard(
        uid="vod-operator",
        title="VOD operator",
        description="The vod-operator itself: reconciles, errors, work queue, Kubernetes API "
        "requests, the platforms and assets it manages, and its build.",
        file="vod-operator.json",
        variables=(
            # No "All" for the job: `.+` would mix in every other controller-runtime
            # operator scraped by the same Prometheus (KEDA, ...). Its values are only the jobs
            # exposing vod_operator_build_info.
            Variable("job", "Job", build_info, multi=True),
            Variable(
                "instance", "Instance", f'{build_info}{{job=~"$job"}}', multi=True, include_all=True
            ),
            Variable(
                "namespace",
                "Namespace",
                f"vod_platform_phase{{{THE_OPERATOR}}}",
                multi=True,
                include_all=True,
            ),
            Variable(
                "platform",
                "Platform",
                f'vod_platform_phase{{{THE_OPERATOR}, namespace=~"$namespace"}}',
                multi=True,
                include_all=True,
            ),
        ),
        rows=(reconciles, queue, api, fleet),
    )


def dashboards() -> tuple[Dashboard, ...]:
    return (platform_dashboard(), operator_dashboard())


# -- Grafana's JSON model -------------------------------------------------------------------


def _variable(variable: Variable) -> dict[str, Any]:
    multi: dict[str, Any] = {"multi": variable.multi, "includeAll": variable.include_all}
    if variable.include_all:
        multi["allValue"] = ".+"
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": variable.query,
        "query": {"query": variable.query, "refId": f"{variable.name}-values"},
        "refresh": 2,  # on time range change: platforms come and go
        "sort": 1,
        "hide": 0,
        "regex": "",
        "current": {},
        "options": [],
        **multi,
    }


def _templating(dashboard: Dashboard) -> list[dict[str, Any]]:
    source = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "hide": 0,
        "current": {},
        "options": [],
        "refresh": 1,
    }
    return [source, *(_variable(v) for v in dashboard.variables)]


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "refId": chr(ord("A") + index),
            **({"instant": True, "range": False} if panel.stat else {"range": True}),
        }
        for index, query in enumerate(panel.queries)
    ]
    if panel.stat:
        options: dict[str, Any] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    else:
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return {
        "id": panel_id,
        "type": "stat" if panel.stat else "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _layout(dashboard: Dashboard) -> list[dict[str, Any]]:
    """Rows one under the other; a row's panels left to right, wrapping at the grid's width."""
    out: list[dict[str, Any]] = []
    y = 0
    for row in dashboard.rows:
        out.append(
            {
                "id": len(out) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + PANEL_HEIGHT
            out.append(_panel(panel, len(out) + 1, x, y))
            x += panel.width
        y += PANEL_HEIGHT
    return out


def render(dashboard: Dashboard) -> dict[str, Any]:
    """Grafana's JSON model of `dashboard` (import it, or let the sidecar load the ConfigMap)."""
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _templating(dashboard)},
        "panels": _layout(dashboard),
    }


def to_json(model: Mapping[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def expected(folder: Path = DASHBOARDS_DIR) -> dict[Path, str]:
    """Every dashboard file and the text it should have."""
    return {folder / d.file: to_json(render(d)) for d in dashboards()}


def stale(folder: Path = DASHBOARDS_DIR) -> list[Path]:
    """Dashboard files that differ from what the code generates (or are missing)."""
    return [p for p, text in expected(folder).items() if not p.is_file() or p.read_text() != text]


def write(folder: Path = DASHBOARDS_DIR) -> list[Path]:
    """Regenerate the dashboard files; return the ones that changed."""
    changed = stale(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in changed:
        path.write_text(expected(folder)[path])
    return changed


# -- what each panel asks, with the variables given values ----------------------------------

#: `$name`, `${name}` (with an optional `:format`) and `[[name]]`, as Grafana writes variables.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with every variable replaced by its value; KeyError names an unknown one."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, ready for Prometheus' /api/v1/query."""

    dashboard: str
    panel: str
    ref: str
    expr: str


def panel_queries(
    model: Mapping[str, Any],
    variables: Mapping[str, str],
    rate_interval: str = "5m",
    time_range: str = "1h",
) -> list[PanelQuery]:
    """Every target of every panel of a dashboard's JSON model, with the dashboard's variables
    (`variables`: name -> value; a multi-value variable's "All" is its allValue, `.+`) and
    Grafana's own ($__rate_interval, $__interval, $__range) replaced by concrete values."""
    values = {
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": time_range,
        **variables,
    }
    found = []
    for panel in _all_panels(model["panels"]):
        for target in panel.get("targets", []):
            found.append(
                PanelQuery(
                    model["title"],
                    panel["title"],
                    target["refId"],
                    substitute(target["expr"], values),
                )
            )
    return found


def _all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels", []))


def variable_queries(model: Mapping[str, Any]) -> dict[str, str]:
    """Each query variable's `label_values(...)` query, by name."""
    return {
        v["name"]: v["query"]["query"] for v in model["templating"]["list"] if v["type"] == "query"
    }
