"""Alerts proven on real pods: the platform's own PrometheusRule, loaded by the session's
Prometheus, goes pending, fires and resolves as the platform breaks and heals.

- Down: every streaming pod of a PVC platform goes away (the node is cordoned and the pods are
  deleted, as when a node is lost): `VideoPlatformDown` is pending within two scrape intervals
  (plus one rule evaluation), fires after its `for`, and resolves once the node takes pods again.
- Origin: the S3 server of an S3 platform goes away (its pod is deleted: connections are
  refused) while viewers ask for bytes: what the slice cache holds is still served, the rest is
  answered 502, `VideoPlatformOriginUnavailable` fires, and resolves once the S3 server is back
  (it comes back empty, an emptyDir: the test puts the clip back, as a restore would).

Time is shortened only by the platform's own settings (`spec.monitoring.scrapeInterval: 5s`,
`spec.monitoring.alerts.timeScale: 0.1`), never by a test-only code path. Every wait is bounded;
traffic goes to pod IPs of this cluster only.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import obstore
import pytest

from localcluster.node import NODE_NAME
from tests.cluster.conftest import Namespace, OperatorProcess
from tests.cluster.podclient import pattern
from tests.cluster.test_operator import wait_ready
from tests.cluster.test_real_pods import all_pods_ready, media, pvc_platform, stream_pods
from tests.cluster.test_s3_origin import JWT_KEY, PREFIX, bucket, get, s3_platform, seaweedfs

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane, pytest.mark.real_node]

__all__ = ["media", "seaweedfs"]  # fixtures of the two modules, used here by name

SCRAPE_SECONDS = 5
#: The Prometheus of the stack evaluates its rules this often (localcluster.monitoring).
EVALUATION_SECONDS = 5
TIME_SCALE = 0.1
MONITORING = f"""
monitoring:
  scrapeInterval: {SCRAPE_SECONDS}s
  alerts: {{timeScale: {TIME_SCALE}}}
"""
#: VideoPlatformDown's `for` (2m) and VideoPlatformOriginUnavailable's (5m), scaled.
DOWN_FOR = 120 * TIME_SCALE
ORIGIN_FOR = 300 * TIME_SCALE
CLIP = "clips/alerts.bin"
CLIP_SIZE = 8 * 1024 * 1024  # 8 slices of 1 MiB: requests past the first one miss the cache


@dataclass
class Timeline:
    """When things happened, in seconds since `start`, for the closing report."""

    start: float = field(default_factory=time.time)
    events: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str, at: float | None = None) -> float:
        moment = (time.time() if at is None else at) - self.start
        self.events.append((moment, what))
        return moment

    def report(self, title: str) -> str:
        lines = [f"{title}:"] + [f"  t+{t:6.1f} s  {what}" for t, what in sorted(self.events)]
        return "\n".join(lines)


def alert(prometheus: Any, name: str, namespace: str, platform: str) -> dict[str, Any] | None:
    """The alert `name` of one platform as Prometheus reports it (state, activeAt), or None."""
    for found in prometheus.api("alerts")["alerts"]:
        labels = found["labels"]
        if (labels.get("alertname"), labels.get("namespace"), labels.get("platform")) == (
            name,
            namespace,
            platform,
        ):
            return found  # type: ignore[no-any-return]
    return None


def epoch(rfc3339: str) -> float:
    """Prometheus' activeAt (RFC 3339 with nanoseconds) as a Unix time."""
    text = rfc3339.rstrip("Z")
    whole, _, fraction = text.partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{fraction or 0}")


def wait_state(
    prometheus: Any, name: str, ns: str, platform: str, state: str | None, timeout: float
) -> tuple[float, dict[str, Any] | None]:
    """Poll until the alert is in `state` (None: gone); returns when it was seen, and it."""

    def check() -> tuple[float, dict[str, Any] | None] | None:
        found = alert(prometheus, name, ns, platform)
        seen = found["state"] if found else None
        return (time.time(), found) if seen == state else None

    result: tuple[float, dict[str, Any] | None] = prometheus.wait_for(
        check, timeout=timeout, interval=1.0
    )
    return result


def rule_loaded(prometheus: Any, name: str, ns: str) -> bool:
    for group in prometheus.api("rules")["groups"]:
        for rule in group["rules"]:
            if rule.get("name") == name and f'namespace="{ns}"' in rule.get("query", ""):
                assert rule["health"] == "ok", rule
                return True
    return False


def healthy_targets(prometheus: Any, ns: str, platform: str) -> int:
    result = prometheus.query(f'sum(up{{namespace="{ns}", platform="{platform}"}})')
    return int(float(result[0]["value"][1])) if result else 0


@pytest.fixture
def cordon_undone(namespace: Namespace) -> Iterator[None]:
    """The node is uncordoned whatever happens in the test."""
    yield
    namespace.cluster.kubectl("uncordon", NODE_NAME, check=False)


def test_a_platform_whose_pods_all_go_away_alerts_down_and_resolves(
    operator: OperatorProcess,
    namespace: Namespace,
    media: Path,
    prometheus: Any,
    cordon_undone: None,
) -> None:
    ns = namespace
    ns.apply(pvc_platform("edge", "replicas: 2\n" + MONITORING))
    wait_ready(ns, "edge", timeout=180)
    all_pods_ready(ns, "edge")
    prometheus.wait_for(lambda: rule_loaded(prometheus, "VideoPlatformDown", ns.name), 90)
    prometheus.wait_for(lambda: healthy_targets(prometheus, ns.name, "edge") == 2, 90)
    # Before the first scrape of a new platform the rule sees no `up` yet: let that pass.
    wait_state(prometheus, "VideoPlatformDown", ns.name, "edge", None, 60)

    timeline = Timeline()
    ns.cluster.kubectl("cordon", NODE_NAME)
    ns.kubectl("delete", "pod", "-l", "app.kubernetes.io/instance=edge", "--wait=true",
               "--timeout=90s", timeout=120)  # fmt: skip
    gone = timeline.mark("every streaming pod deleted (node cordoned: replacements Pending)")
    _, pending = wait_state(prometheus, "VideoPlatformDown", ns.name, "edge", "pending", 60)
    assert pending is not None
    active = timeline.mark("VideoPlatformDown pending (activeAt)", epoch(pending["activeAt"]))
    fired, _ = wait_state(prometheus, "VideoPlatformDown", ns.name, "edge", "firing", 90)
    firing = timeline.mark("VideoPlatformDown firing (first seen)", fired)

    ns.cluster.kubectl("uncordon", NODE_NAME)
    healed = timeline.mark("node uncordoned")
    all_pods_ready(ns, "edge")
    timeline.mark("both replacement pods Ready")
    resolved, _ = wait_state(prometheus, "VideoPlatformDown", ns.name, "edge", None, 90)
    done = timeline.mark("VideoPlatformDown resolved (gone from /api/v1/alerts)", resolved)
    print("\n" + timeline.report("VideoPlatformDown on real pods"))

    assert active - gone <= 2 * SCRAPE_SECONDS + EVALUATION_SECONDS, timeline.report("late")
    assert firing - active >= DOWN_FOR - 1, "fired before its `for`"
    assert firing - active <= DOWN_FOR + 2 * EVALUATION_SECONDS + 2, timeline.report("slow")
    assert done > healed
    assert len(stream_pods(ns, "edge")) == 2


@dataclass
class Viewers:
    """Range requests for bytes past the first cached slice, one every 0.2 s from the host to a
    streaming pod IP, until stopped (bounded: at most `limit` requests)."""

    host: str
    path: str
    limit: int = 2000
    statuses: Counter[int] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        for number in range(self.limit):
            if self.stop.is_set():
                return
            offset = (1 + number % 7) * 1024 * 1024 + number  # slices 1..7
            try:
                status, _, _ = get(self.host, self.path, {"Range": f"bytes={offset}-{offset + 99}"})
            except OSError:
                status = 0
            self.statuses[status] += 1
            self.stop.wait(0.2)

    def __enter__(self) -> Viewers:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=60)

    def since(self, before: Counter[int]) -> Counter[int]:
        return self.statuses - before


def test_an_s3_platform_whose_origin_goes_away_alerts_and_resolves(
    operator: OperatorProcess, namespace: Namespace, seaweedfs: str, prometheus: Any
) -> None:
    ns = namespace
    obstore.put(bucket(seaweedfs), PREFIX + CLIP, pattern(CLIP_SIZE))
    ns.kubectl("create", "secret", "generic", "library-jwt", f"--from-literal=key={JWT_KEY}")
    ns.apply(s3_platform("library", replicas=1, extra=textwrap.indent(MONITORING, "    ")))
    wait_ready(ns, "library", timeout=180)
    all_pods_ready(ns, "library")
    (pod,) = stream_pods(ns, "library")
    host = pod["status"]["podIP"]
    status, _, _ = get(host, f"/{CLIP}", {"Range": "bytes=0-99"})
    assert status == 206
    name = "VideoPlatformOriginUnavailable"
    prometheus.wait_for(lambda: rule_loaded(prometheus, name, ns.name), 90)
    prometheus.wait_for(lambda: healthy_targets(prometheus, ns.name, "library") == 1, 90)

    timeline = Timeline()
    with Viewers(host, f"/{CLIP}") as viewers:
        ns.kubectl("scale", "deploy/seaweedfs", "--replicas=0")
        down = timeline.mark("S3 server scaled to 0 (its pod terminating)")
        before = Counter(viewers.statuses)
        _, pending = wait_state(prometheus, name, ns.name, "library", "pending", 90)
        assert pending is not None
        cause = pending["labels"]["cause"]
        timeline.mark(f"{name} pending, cause {cause} (activeAt)", epoch(pending["activeAt"]))
        fired, _ = wait_state(prometheus, name, ns.name, "library", "firing", 120)
        timeline.mark(f"{name} firing (first seen)", fired)
        during = viewers.since(before)

        ns.kubectl("scale", "deploy/seaweedfs", "--replicas=1")
        ns.kubectl("rollout", "status", "deploy/seaweedfs", "--timeout=120s", timeout=150)
        obstore.put(bucket(seaweedfs), PREFIX + CLIP, pattern(CLIP_SIZE))
        back = timeline.mark("S3 server back (rollout complete, clip restored)")
        healed = Counter(viewers.statuses)
        resolved, _ = wait_state(prometheus, name, ns.name, "library", None, 150)
        timeline.mark(f"{name} resolved (gone from /api/v1/alerts)", resolved)
        after = viewers.since(healed)
    print("\n" + timeline.report(f"{name} on real pods"))
    print(f"answers while the origin was away: {dict(during)}; after it came back: {dict(after)}")

    assert cause in {"unreachable", "timeout"}
    assert during[502] + during[504] > 0, during
    # Cached slices are still served; everything else is a gateway error, never a 404.
    assert set(during) <= {206, 502, 504}, during
    assert after[206] > 0, after
    assert set(after) <= {206, 502, 504}, after
    assert fired - epoch(pending["activeAt"]) >= ORIGIN_FOR - 1
    assert back > down
