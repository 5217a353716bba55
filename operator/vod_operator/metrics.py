"""The operator's own metrics (monitoring/README.md, "Series of the operator").

controller-runtime's names, so stock panels and alerts work: reconcile counts and times per
controller, the work queues' depth, adds, retries and latencies (`QueueMetrics`, the Controller's
`QueueObserver`), API requests (`OperatorMetrics.api_request`, the Kube `RequestHook`), and a
build-info series. Beside them the operator's view of each platform (`PlatformView`): phase,
replicas, VideoAssets by phase, the oldest asset in Processing and packaging times. The
reconcilers fill the view from what they read anyway; a scrape reads the view and the queues'
state (no API call per scrape), so a deleted platform's series go with it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:  # the Controller imports the reconcilers, which import this module
    from vod_operator.controller import Key, Outcome

# controller-runtime has no `_created` series; neither do we (process-wide switch).
prometheus_client.disable_created_metrics()

#: Values of controller_runtime_reconcile_total's `result` (every one is exposed, 0 at first).
RESULTS = ("success", "error", "requeue", "requeue_after")
PLATFORM_PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed", "Suspended")
ASSET_PHASES = ("Pending", "Uploading", "Processing", "Ready", "Failed")

#: controller_runtime_reconcile_time_seconds (a coarser cut of controller-runtime's buckets).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: workqueue_*_duration_seconds: client-go's ExponentialBuckets(10e-9, 10, 10).
QUEUE_BUCKETS = tuple(10e-9 * 10**i for i in range(10))
#: vod_asset_packaging_duration_seconds: a short clip packages in seconds, a film in an hour.
PACKAGING_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
#: Deleted platforms' uids remembered, so a pass that read one before it went cannot bring
#: its series back.
TOMBSTONES = 4096

Clock = Callable[[], float]


# -- the work queues ----------------------------------------------------------------------


class QueueMetrics:
    """One Controller's queue and reconciles: a `controller.QueueObserver`.

    Counts and latencies go straight to the registry's families; the queue's state (waiting
    keys, passes under way and since when) is kept here, under a lock, for the scrape.
    """

    def __init__(self, families: _Families, name: str, workers: int, clock: Clock) -> None:
        self.name = name
        self.workers = workers
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: set[Key] = set()
        self._running: dict[Key, float] = {}
        self._results = {r: families.reconcile_total.labels(name, r) for r in RESULTS}
        self._errors = families.reconcile_errors.labels(name)
        self._reconcile_time = families.reconcile_time.labels(name)
        self._adds = families.adds.labels(name)
        self._retries = families.retries.labels(name)
        self._queue_duration = families.queue_duration.labels(name)
        self._work_duration = families.work_duration.labels(name)

    def added(self) -> None:
        self._adds.inc()

    def retried(self) -> None:
        self._retries.inc()

    def waiting(self, key: Key) -> None:
        with self._lock:
            self._waiting.add(key)

    def started(self, key: Key, queued_seconds: float) -> None:
        with self._lock:
            self._waiting.discard(key)
            self._running[key] = self._clock()
        self._queue_duration.observe(max(0.0, queued_seconds))

    def finished(self, key: Key, seconds: float, outcome: Outcome) -> None:
        with self._lock:
            self._running.pop(key, None)
        self._results[outcome].inc()
        if outcome == "error":
            self._errors.inc()
        self._reconcile_time.observe(seconds)
        self._work_duration.observe(seconds)

    def state(self) -> QueueState:
        """The queue as it is now: depth and the passes under way."""
        now = self._clock()
        with self._lock:
            ages = [max(0.0, now - since) for since in self._running.values()]
            depth = len(self._waiting)
        return QueueState(self.name, self.workers, depth, ages)


@dataclass(frozen=True)
class QueueState:
    name: str
    workers: int
    depth: int
    #: Seconds each pass under way has run so far.
    running: list[float]


# -- the operator's view of each platform -------------------------------------------------


@dataclass(frozen=True)
class PlatformState:
    """What one reconcile pass saw of a platform; None fields were not seen this time."""

    uid: str
    phase: str
    #: The streaming Deployment's spec.replicas and status.readyReplicas (0, 0 without one).
    replicas: tuple[int, int] | None
    #: spec.autoscaling.maxReplicas while autoscaling is enabled.
    max_replicas: int | None
    #: VideoAssets of the platform by status.phase (every phase present).
    assets: Mapping[str, int] | None
    #: Names of its VideoAssets in Processing.
    processing: frozenset[str] = frozenset()

    def over(self, before: PlatformState | None) -> PlatformState:
        """This observation, with what it did not see kept from `before`."""
        if before is None or before.uid != self.uid:
            return self
        kept = self
        if self.replicas is None:
            kept = replace(kept, replicas=before.replicas)
        if self.assets is None:
            kept = replace(kept, assets=before.assets, processing=before.processing)
        return kept


def platform_state(
    platform: Mapping[str, Any],
    phase: str,
    deployment: Mapping[str, Any] | None,
    *,
    deployment_observed: bool,
    assets: Sequence[Mapping[str, Any]] | None,
) -> PlatformState:
    """The view of a platform from one pass: its status phase, its streaming Deployment (when
    the children could be listed) and the VideoAssets of its namespace (when they could)."""
    replicas: tuple[int, int] | None = None
    if deployment_observed:
        replicas = (0, 0)
        if deployment is not None:
            replicas = (
                int(deployment.get("spec", {}).get("replicas", 1)),
                int(deployment.get("status", {}).get("readyReplicas", 0)),
            )
    scaling = platform.get("spec", {}).get("autoscaling") or {}
    max_replicas = int(scaling["maxReplicas"]) if scaling.get("enabled") else None
    counts: dict[str, int] | None = None
    processing: set[str] = set()
    if assets is not None:
        name = platform["metadata"]["name"]
        counts = dict.fromkeys(ASSET_PHASES, 0)
        for asset in assets:
            if asset.get("spec", {}).get("platformRef", {}).get("name") != name:
                continue
            asset_phase = (asset.get("status") or {}).get("phase") or "Pending"
            if asset_phase in counts:  # Deleting: on its way out, not counted
                counts[asset_phase] += 1
            if asset_phase == "Processing":
                processing.add(asset["metadata"]["name"])
    return PlatformState(
        uid=str(platform["metadata"].get("uid", "")),
        phase=phase,
        replicas=replicas,
        max_replicas=max_replicas,
        assets=counts,
        processing=frozenset(processing),
    )


@dataclass
class _Buckets:
    """A histogram's state: cumulative counts are computed at scrape time."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((floatToGoString(bound), running))
        return out


PlatformKey = tuple[str, str]  # (namespace, platform)


class PlatformView:
    """Per platform, what the reconcilers last saw; thread-safe (they run in worker threads)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._platforms: dict[PlatformKey, PlatformState] = {}
        self._gone: dict[str, None] = {}  # uids of deleted platforms, oldest first
        #: (namespace, asset) -> when its packaging Job started (epoch seconds), in Processing.
        self._processing_since: dict[tuple[str, str], float] = {}
        self._packaging: dict[PlatformKey, _Buckets] = {}

    # -- platforms (the VideoPlatform reconciler and the watch) ---------------------------
    def observe_platform(self, namespace: str, name: str, state: PlatformState) -> None:
        with self._lock:
            if state.uid in self._gone:
                return  # a pass that read the platform before it was deleted
            key = (namespace, name)
            self._platforms[key] = state.over(self._platforms.get(key))

    def forget_platform(self, namespace: str, name: str, uid: str | None = None) -> None:
        """The platform is gone (or being deleted): its series go."""
        with self._lock:
            self._platforms.pop((namespace, name), None)
            self._packaging.pop((namespace, name), None)
            if uid:
                self._gone[uid] = None
                while len(self._gone) > TOMBSTONES:
                    del self._gone[next(iter(self._gone))]

    # -- assets (the VideoAsset reconciler and the watch) ---------------------------------
    def asset_processing(self, namespace: str, asset: str, since: float | None) -> None:
        """An asset is in Processing since `since` (None: since when it was first seen so)."""
        with self._lock:
            key = (namespace, asset)
            if since is not None:
                self._processing_since[key] = since
            else:
                self._processing_since.setdefault(key, self._clock())

    def asset_settled(self, namespace: str, asset: str) -> None:
        """An asset is not (or no longer) in Processing, or gone."""
        with self._lock:
            self._processing_since.pop((namespace, asset), None)

    def packaging_observed(self, namespace: str, platform: str, seconds: float) -> None:
        with self._lock:
            buckets = self._packaging.setdefault((namespace, platform), _Buckets(PACKAGING_BUCKETS))
            buckets.observe(max(0.0, seconds))

    # -- the scrape -----------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            platforms = sorted(self._platforms.items())
            since = dict(self._processing_since)
            packaging = {k: (b.cumulative(), b.total) for k, b in self._packaging.items()}
        now = self._clock()
        labels = ["namespace", "platform"]
        phase = GaugeMetricFamily(
            "vod_platform_phase",
            "1 for the VideoPlatform's current status.phase, 0 for the others.",
            labels=[*labels, "phase"],
        )
        desired = GaugeMetricFamily(
            "vod_platform_replicas_desired",
            "spec.replicas of the platform's streaming Deployment (what the spec or the HPA asks).",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "vod_platform_replicas_ready",
            "status.readyReplicas of the platform's streaming Deployment.",
            labels=labels,
        )
        ceiling = GaugeMetricFamily(
            "vod_platform_autoscaling_max_replicas",
            "spec.autoscaling.maxReplicas, while autoscaling is enabled.",
            labels=labels,
        )
        assets = GaugeMetricFamily(
            "vod_assets", "VideoAssets of the platform by status.phase.", labels=[*labels, "phase"]
        )
        oldest = GaugeMetricFamily(
            "vod_assets_processing_oldest_seconds",
            "Seconds since the packaging Job of the platform's oldest VideoAsset in Processing "
            "started (0 when none is).",
            labels=labels,
        )
        durations = HistogramMetricFamily(
            "vod_asset_packaging_duration_seconds",
            "From a packaging Job's start to its VideoAsset becoming Ready.",
            labels=labels,
        )
        for (namespace, name), state in platforms:
            values = [namespace, name]
            for known in PLATFORM_PHASES:
                phase.add_metric([*values, known], 1.0 if state.phase == known else 0.0)
            replicas = state.replicas or (0, 0)
            desired.add_metric(values, replicas[0])
            ready.add_metric(values, replicas[1])
            if state.max_replicas is not None:
                ceiling.add_metric(values, state.max_replicas)
            counts = state.assets or dict.fromkeys(ASSET_PHASES, 0)
            for known in ASSET_PHASES:
                assets.add_metric([*values, known], counts.get(known, 0))
            starts = [since[(namespace, a)] for a in state.processing if (namespace, a) in since]
            oldest.add_metric(values, max(0.0, now - min(starts)) if starts else 0.0)
            buckets, total = packaging.get(
                (namespace, name), (_Buckets(PACKAGING_BUCKETS).cumulative(), 0.0)
            )
            durations.add_metric(values, buckets, total)
        yield from (phase, desired, ready, ceiling, assets, oldest, durations)


# -- the registry -------------------------------------------------------------------------


class _Families:
    """The event-driven families (counters and histograms), registered in `registry`."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.reconcile_total = Counter(
            "controller_runtime_reconcile",
            "Reconcile passes per controller and result.",
            ["controller", "result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Reconcile passes that failed, per controller.",
            ["controller"],
            registry=registry,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of reconcile passes, per controller.",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.adds = Counter(
            "workqueue_adds", "Adds handled by the work queue.", ["name"], registry=registry
        )
        self.retries = Counter(
            "workqueue_retries", "Retries handled by the work queue.", ["name"], registry=registry
        )
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long a key waits in the work queue before a worker takes it.",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long processing a key from the work queue takes.",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "rest_client_requests",
            "API server requests, by status code, method and host.",
            ["code", "method", "host"],
            registry=registry,
        )
        build = Gauge(
            "vod_operator_build_info",
            "The operator's version; always 1.",
            ["version"],
            registry=registry,
        )
        build.labels(version).set(1)


class _QueueCollector(Collector):
    """The queues' state at scrape time (controller-runtime's gauges)."""

    def __init__(self, queues: Iterable[QueueMetrics]) -> None:
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        states = [q.state() for q in self._queues]
        controller, name = ["controller"], ["name"]
        gauges = {
            "controller_runtime_max_concurrent_reconciles": (
                "Reconcile passes a controller runs at once at most.",
                controller,
                lambda s: s.workers,
            ),
            "controller_runtime_active_workers": (
                "Reconcile passes under way.",
                controller,
                lambda s: len(s.running),
            ),
            "workqueue_depth": ("Keys waiting for a worker.", name, lambda s: s.depth),
            "workqueue_unfinished_work_seconds": (
                "Seconds the passes under way have run so far, added up.",
                name,
                lambda s: sum(s.running),
            ),
            "workqueue_longest_running_processor_seconds": (
                "Seconds the longest pass under way has run so far.",
                name,
                lambda s: max(s.running, default=0.0),
            ),
        }
        for metric, (doc, labels, value) in gauges.items():
            family = GaugeMetricFamily(metric, doc, labels=labels)
            for state in states:
                family.add_metric([state.name], value(state))
            yield family


class _PlatformCollector(Collector):
    def __init__(self, view: PlatformView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        return self._view.collect()


class OperatorMetrics:
    """Every series of the operator, in its own registry."""

    def __init__(
        self, version: str, *, clock: Clock = time.time, monotonic: Clock = time.monotonic
    ) -> None:
        self.registry = CollectorRegistry()
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        self._families = _Families(self.registry, version)
        self._monotonic = monotonic
        self._queues: list[QueueMetrics] = []
        self.platforms = PlatformView(clock)
        self.registry.register(_QueueCollector(self._queues))
        self.registry.register(_PlatformCollector(self.platforms))

    def queue(self, controller: str, workers: int) -> QueueMetrics:
        """The observer of one Controller (`controller` and `name` label: e.g. videoplatform)."""
        queue = QueueMetrics(self._families, controller, workers, self._monotonic)
        self._queues.append(queue)
        return queue

    def leader_election(self, name: str, identity: str) -> Callable[[bool], None]:
        """Expose this replica's part in the election of Lease `name`; returns the setter of
        leader_election_master_status (1 while this replica leads, else 0)."""
        status = Gauge(
            "leader_election_master_status",
            "1 while this replica holds the leader Lease `name`, else 0.",
            ["name"],
            registry=self.registry,
        ).labels(name)
        Gauge(
            "vod_operator_leader_election_info",
            "This replica's identity in the election of Lease `name`; always 1.",
            ["name", "identity"],
            registry=self.registry,
        ).labels(name, identity).set(1)

        def set_status(leading: bool) -> None:
            status.set(1 if leading else 0)

        set_status(False)
        return set_status

    def api_request(self, method: str, status: int | None, host: str) -> None:
        """A `kube.RequestHook`: count one API request (code `<error>`: no answer came)."""
        code = "<error>" if status is None else str(status)
        self._families.requests.labels(code, method.upper(), host).inc()

    def exposition(self) -> bytes:
        """The text a scrape gets (Prometheus text format 0.0.4)."""
        return prometheus_client.generate_latest(self.registry)


class MetricsServer:
    """`/metrics` over HTTP in a daemon thread (prometheus_client's WSGI server)."""

    def __init__(self, registry: CollectorRegistry, address: str, port: int) -> None:
        self._server, self._thread = prometheus_client.start_http_server(
            port, addr=address, registry=registry
        )
        host, bound = self._server.server_address[:2]
        self.address = str(host)
        self.port = int(bound)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
