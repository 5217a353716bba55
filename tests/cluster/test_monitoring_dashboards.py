"""Every panel of both Grafana dashboards answers on a real Prometheus after real traffic.

Two platforms in one namespace, each giving the panels that need it their series
(`Panel.needs` in tools/vod_delivery/dashboards.py):
- `web`, on a PersistentVolume (the helpers of test_real_pods.py), autoscaling on (the HPA's
  ceiling), uploads allowed (a JWT): a full GET, a Range GET, a 404, a stored PUT and a PUT
  refused as too large (traffic, range, upload, upload_failure, autoscaling), and a VideoAsset
  packaged to Ready by a real Job (asset_ready);
- `remote`, on S3 (SeaweedFS in the namespace, the helpers of test_s3_origin.py) with a slice
  cache: the same range twice (a miss, then a hit) and a 404 (remote_origin).
Every query of every panel, with the dashboard's variables set to that platform, must return at
least one finite sample (a ratio of two zero rates, or a quantile of an empty histogram, is NaN:
a panel that shows nothing); the test fails listing each one that does not. The variables' own
`label_values(...)` queries must offer both platforms.

Needs, from the session: the `prometheus` fixture (a Prometheus Operator's Prometheus selecting
ServiceMonitors in every namespace; `.query(expr)` -> data.result, `.api(path, **params)` ->
data), and the session's operator scraped by it (the operator dashboard, and the platform
dashboard's pods and assets panels, read the operator's own series: `operator` panels).
"""

from __future__ import annotations

import http.client
import math
import re
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import obstore
import pytest

from tests.cluster.conftest import Namespace
from tests.cluster.podclient import pattern
from tests.cluster.test_assets import asset, make_video, wait_phase
from tests.cluster.test_operator import wait_ready
from tests.cluster.test_real_pods import CLIP, CLIP_SIZE, all_pods_ready, media, pvc_platform
from tests.cluster.test_s3_origin import (
    JWT_KEY,
    PREFIX,
    TRANSCODING,
    bucket,
    get,
    s3_platform,
    seaweedfs,
)
from vod_delivery import dashboards

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane, pytest.mark.real_node]

__all__ = ["media", "seaweedfs"]  # fixtures of the two modules, used here by name

#: `$__rate_interval` as Grafana computes it for a 5 s scrape interval is 20 s; 1 m also covers
#: four scrapes of a target left at the stack's 15 s.
RATE_WINDOW = "1m"
#: `$__range`: the dashboard's time range, long enough to hold the packaging of the asset.
TIME_RANGE = "30m"
#: How long series may take to appear after the traffic (scrapes, then two samples for rate()).
SETTLE_SECONDS = 120
SCRAPE = "\nmonitoring: {scrapeInterval: 5s}\n"
REMOTE_CLIP = "clips/pattern.bin"
REMOTE_CLIP_SIZE = 3 * 1024 * 1024
MAX_UPLOAD = 1024 * 1024

WEB = (
    textwrap.dedent(
        """
        autoscaling: {enabled: true, minReplicas: 1, maxReplicas: 2,
                      targetCPUUtilizationPercentage: 80}
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {cpu: "1", memory: 512Mi}
        server: {maxUploadBytes: 1048576}
        security:
          jwt: {secretName: web-jwt, secretKey: key, keyType: SharedSecret}
        """
    )
    + SCRAPE
    + textwrap.dedent(TRANSCODING)
)

#: Which platform produces the series a panel needs (every other scenario: `web`).
PLATFORM_OF = {dashboards.REMOTE_ORIGIN: "remote"}
#: The scenarios this test produces (the docstring says how).
PRODUCED = {
    dashboards.TRAFFIC, dashboards.RANGE, dashboards.REMOTE_ORIGIN, dashboards.UPLOAD,
    dashboards.UPLOAD_FAILURE, dashboards.OPERATOR, dashboards.AUTOSCALING,
    dashboards.ASSET_READY,
}  # fmt: skip
#: What the traffic below must show, beyond "some data": panel title -> (check, what it means).
SHOWS: dict[str, tuple[Callable[[list[dict[str, Any]]], bool], str]] = {
    "Requests by status class": (
        lambda r: {"2xx", "4xx"} <= {s["metric"].get("status_class") for s in r},
        "2xx (GET, PUT) and 4xx (404, 413) classes",
    ),
    "Range requests by kind": (
        lambda r: "single" in {s["metric"].get("kind") for s in r},
        "the single-range GET",
    ),
    "Upload failures by reason": (
        lambda r: "too_large" in {s["metric"].get("reason") for s in r},
        "the PUT refused as too large",
    ),
    "Cache requests by result": (
        lambda r: {"hit", "miss"} <= {s["metric"].get("result") for s in r},
        "a miss and a hit",
    ),
    "Streaming pods": (
        lambda r: any(float(s["value"][1]) >= 1 for s in r),
        "replicas counted",
    ),
    "VideoAssets by phase": (
        lambda r: any(s["metric"].get("phase") == "Ready" and float(s["value"][1]) >= 1 for s in r),
        "the packaged asset Ready",
    ),
    "Assets packaged": (
        lambda r: any(float(s["value"][1]) > 0 for s in r),
        "one packaging observed",
    ),
}


def put(host: str, path: str, body: bytes | None, length: int, token: str) -> int:
    """A PUT through the platform; with `body` None only the headers are sent (a client
    announcing a body the server refuses before reading it)."""
    conn = http.client.HTTPConnection(host, 8080, timeout=30)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", str(length))
        conn.endheaders(body)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def traffic(ns: Namespace, remote_clip: bytes) -> None:
    """What a viewer and an uploader do, each request checked as it is answered."""
    web = ns.get("service", "web-stream")["spec"]["clusterIP"]
    status, _, body = get(web, f"/{CLIP}")
    assert (status, len(body)) == (200, CLIP_SIZE)
    status, headers, body = get(web, f"/{CLIP}", {"Range": "bytes=0-65535"})
    assert (status, headers.get("Content-Range")) == (206, f"bytes 0-65535/{CLIP_SIZE}")
    assert get(web, "/absent.bin")[0] == 404
    token = jwt.encode({"sub": "dashboards", "exp": int(time.time()) + 300}, JWT_KEY, "HS256")
    upload = pattern(64 * 1024)
    assert put(web, "/uploads/dashboards.bin", upload, len(upload), token) in (200, 201)
    assert put(web, "/uploads/too-large.bin", None, 2 * MAX_UPLOAD, token) == 413
    remote = ns.get("service", "remote-stream")["spec"]["clusterIP"]
    for _ in range(2):  # a miss (fetched from the bucket), then a hit (from the cache)
        status, _, body = get(remote, f"/{REMOTE_CLIP}", {"Range": "bytes=1048576-1114111"})
        assert (status, body) == (206, remote_clip[1048576:1114112])
    assert get(remote, "/clips/absent.bin")[0] == 404


def keep_rates_alive(ns: Namespace, remote_clip: bytes) -> None:
    """One Range GET on each platform: the panels that rate over a minute (media durations, the
    cache byte-hit ratio) would read NaN, 0/0, once the traffic above leaves their window while
    slower panels (the operator's, the asset's) are still catching up."""
    web = ns.get("service", "web-stream")["spec"]["clusterIP"]
    assert get(web, f"/{CLIP}", {"Range": "bytes=0-1023"})[0] == 206
    remote = ns.get("service", "remote-stream")["spec"]["clusterIP"]
    status, _, body = get(remote, f"/{REMOTE_CLIP}", {"Range": "bytes=1048576-1049599"})
    assert (status, body) == (206, remote_clip[1048576:1049600])


def label_values(prometheus: Any, query: str, values: dict[str, str]) -> list[str]:
    """What Grafana offers for a `label_values(selector, label)` variable."""
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    selector = dashboards.substitute(match[1], values)
    return sorted(prometheus.api(f"label/{match[2]}/values", **{"match[]": selector}))


def variable_values(
    prometheus: Any, model: dict[str, Any], picks: dict[str, str]
) -> dict[str, str]:
    """Each variable of a dashboard as a person picks it: `picks` where given (checked to be on
    offer), else every value offered (an alternation, as Grafana formats a multi-value pick;
    Grafana also escapes regex characters, which changes nothing for these names)."""
    chosen: dict[str, str] = {}
    for name, query in dashboards.variable_queries(model).items():
        offered = label_values(prometheus, query, chosen)
        assert offered, f"variable {name} offers nothing: {query} (is its target scraped?)"
        wanted = picks.get(name)
        if wanted is None:
            chosen[name] = "|".join(offered)
        else:
            missing = set(wanted.split("|")) - set(offered)
            assert not missing, f"variable {name} does not offer {missing}: {query} -> {offered}"
            chosen[name] = wanted
    return chosen


def runs(ns: str) -> list[tuple[dashboards.Dashboard, dict[str, str], set[str]]]:
    """(dashboard, variable picks, the panels to run with them): each platform-dashboard panel
    on the platform that produces its series, the operator dashboard over both platforms."""
    platform = dashboards.platform_dashboard()
    on_remote = {p.title for p in platform.panels() if PLATFORM_OF.get(p.needs) == "remote"}
    everything = {p.title for p in platform.panels()}
    operator = dashboards.operator_dashboard()
    return [
        (platform, {"namespace": ns, "platform": "web"}, everything - on_remote),
        (platform, {"namespace": ns, "platform": "remote"}, on_remote),
        (
            operator,
            {"namespace": ns, "platform": "remote|web"},
            {p.title for p in operator.panels()},
        ),
    ]


def run_panels(prometheus: Any, ns: str) -> tuple[list[str], list[str]]:
    """Every panel query of both dashboards: (those returning no finite sample, or not what the
    traffic must show; a line per query with its first samples)."""
    failed: list[str] = []
    report: list[str] = []
    for dashboard, picks, panels in runs(ns):
        model = dashboards.render(dashboard)
        try:
            values = variable_values(prometheus, model, picks)
        except AssertionError as problem:  # not scraped yet (or never: the message says)
            failed.append(f"{dashboard.title} ({picks['platform']}): {problem}")
            continue
        for query in dashboards.panel_queries(model, values, RATE_WINDOW, TIME_RANGE):
            if query.panel not in panels:
                continue
            result = prometheus.query(query.expr)
            where = f"{dashboard.title} / {query.panel} [{query.ref}] ({picks['platform']})"
            samples = ", ".join(f"{s['metric']}={s['value'][1]}" for s in result[:4])
            report.append(f"{where}: {samples or 'NOTHING'}{' ...' if len(result) > 4 else ''}")
            if not any(math.isfinite(float(s["value"][1])) for s in result):
                failed.append(f"{where}: no finite sample for {query.expr}: {result[:4]}")
            elif query.panel in SHOWS and not SHOWS[query.panel][0](result):
                failed.append(f"{where}: not {SHOWS[query.panel][1]}: {result}")
    return failed, report


def test_every_panel_of_both_dashboards_returns_data_after_traffic(
    operator_monitored: Any,
    namespace: Namespace,
    media: Path,
    seaweedfs: str,
    prometheus: Any,
) -> None:
    ns = namespace
    assert set(dashboards.SCENARIOS) == PRODUCED, "a new scenario: make this test produce it"
    make_video(media / "uploads" / "pattern.mp4")
    ns.kubectl("create", "secret", "generic", "web-jwt", f"--from-literal=key={JWT_KEY}")
    ns.apply(pvc_platform("web", WEB))
    remote_clip = pattern(REMOTE_CLIP_SIZE)
    obstore.put(bucket(seaweedfs), PREFIX + REMOTE_CLIP, remote_clip)
    ns.kubectl("create", "secret", "generic", "remote-jwt", f"--from-literal=key={JWT_KEY}")
    ns.apply(s3_platform("remote", replicas=1, extra=textwrap.indent(SCRAPE, "    ")))
    for name in ("web", "remote"):
        wait_ready(ns, name, timeout=180)
        all_pods_ready(ns, name)
    # increase() counts from a series' first sample: the packaging is counted only if Prometheus
    # has scraped the operator's zero for `web` before it (as on any cluster, where a platform
    # exists for many scrapes before its first asset).
    packaged = f'vod_asset_packaging_duration_seconds_count{{namespace="{ns.name}",platform="web"}}'
    prometheus.wait_for(
        lambda: [r["value"][1] for r in prometheus.query(packaged)] == ["0"], timeout=120
    )
    ns.apply(asset("intro", "source: {path: uploads/pattern.mp4}", platform="web"))
    wait_phase(ns, "intro", "Ready", timeout=400)
    traffic(ns, remote_clip)

    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        keep_rates_alive(ns, remote_clip)
        failed, report = run_panels(prometheus, ns.name)
        if not failed or time.monotonic() > deadline:
            break
        time.sleep(5)
    print("\ndashboard check (panel [target] (platform): samples):\n" + "\n".join(report))
    assert not failed, "panels with no finite sample (or not what the traffic shows):\n" + (
        "\n".join(failed)
    )
