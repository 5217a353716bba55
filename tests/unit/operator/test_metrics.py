"""The operator's own metrics: the Controller and the reconcilers driven for real, the exposition
parsed back with prometheus_client's parser, the API hook against a real HTTP server, and the
/metrics server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf
import pytest
import urllib3
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.operator import crdschema
from tests.unit.operator.fakekube import FakeKube
from tests.unit.operator.test_assets import URL, finish, jobs_of, succeeded
from tests.unit.operator.test_reconcile import mark_deployment_ready
from vod_operator import handlers
from vod_operator.assets.reconcile import AssetReconciler
from vod_operator.controller import Controller
from vod_operator.kube import VIDEOASSET, VIDEOPLATFORM, Kube, KubeError
from vod_operator.metrics import (
    ASSET_PHASES,
    PLATFORM_PHASES,
    RESULTS,
    MetricsServer,
    OperatorMetrics,
)
from vod_operator.options import Options
from vod_operator.reconcile import Reconciler, Result

pytestmark = pytest.mark.unit

NS = "media"
NOW = "2026-01-01T00:00:00Z"
EPOCH_NOW = 1767225600.0  # NOW in epoch seconds
PVC = {"storage": {"pvc": {"claimName": "videos"}}}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: OperatorMetrics) -> Samples:
    """Every sample of the exposition, keyed by (sample name, labels)."""
    text = metrics.exposition().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (sample, labels), v in samples.items() if sample == name}


# -- the work queue and the reconciles -----------------------------------------------------


@contextlib.asynccontextmanager
async def observed(
    metrics: OperatorMetrics, reconcile: Any, workers: int = 4
) -> AsyncIterator[Controller]:
    controller = Controller(
        reconcile, workers=workers, observer=metrics.queue("videoplatform", workers)
    )
    controller.start()
    try:
        yield controller
    finally:
        await controller.stop()


async def until(check: Any) -> None:
    for _ in range(500):  # 5 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def test_every_result_and_queue_series_is_there_from_the_start() -> None:
    metrics = OperatorMetrics("1.2.3")
    metrics.queue("videoplatform", 4)
    metrics.queue("videoasset", 2)
    samples = scrape(metrics)
    for controller in ("videoplatform", "videoasset"):
        for result in RESULTS:
            name = "controller_runtime_reconcile_total"
            assert value(samples, name, controller=controller, result=result) == 0
        assert (
            value(samples, "controller_runtime_reconcile_errors_total", controller=controller) == 0
        )
        assert value(samples, "workqueue_depth", name=controller) == 0
        assert value(samples, "workqueue_adds_total", name=controller) == 0
        assert value(samples, "workqueue_retries_total", name=controller) == 0
        assert value(samples, "workqueue_longest_running_processor_seconds", name=controller) == 0
    assert (
        value(samples, "controller_runtime_max_concurrent_reconciles", controller="videoasset") == 2
    )
    assert value(samples, "vod_operator_build_info", version="1.2.3") == 1
    assert not [name for name, _ in samples if name.endswith("_created")]


def passes(metrics: OperatorMetrics, controller: str = "videoplatform") -> float:
    samples = scrape(metrics)
    return sum(
        value(samples, "controller_runtime_reconcile_total", controller=controller, result=r)
        for r in RESULTS
    )


def active(metrics: OperatorMetrics, controller: str = "videoplatform") -> float:
    return value(scrape(metrics), "controller_runtime_active_workers", controller=controller)


async def test_results_errors_and_retries_are_counted() -> None:
    metrics = OperatorMetrics("0")
    calls: dict[str, int] = {}

    def reconcile(namespace: str, name: str) -> Result:
        calls[name] = calls.get(name, 0) + 1
        first = calls[name] == 1
        if name == "broken" and first:
            return Result(error="refused")  # retried after 1 s, then fine
        if name == "crash" and first:
            raise RuntimeError("boom")  # a crash is an error too, and retried
        if name == "polling" and calls[name] < 3:
            return Result(requeue_after=0.05)
        return Result()

    async with observed(metrics, reconcile) as controller:
        for name in ("fine", "broken", "crash", "polling"):
            controller.enqueue(("ns", name))
        await until(lambda: passes(metrics) == 8)
        await asyncio.sleep(0.2)  # nothing more comes
        samples = scrape(metrics)

    total = "controller_runtime_reconcile_total"
    vp = "videoplatform"
    assert value(samples, total, controller=vp, result="success") == 4
    assert value(samples, total, controller=vp, result="requeue_after") == 2
    assert value(samples, total, controller=vp, result="error") == 2
    assert value(samples, total, controller=vp, result="requeue") == 0
    assert value(samples, "controller_runtime_reconcile_errors_total", controller=vp) == 2
    assert value(samples, "controller_runtime_reconcile_time_seconds_count", controller=vp) == 8
    assert value(samples, "workqueue_work_duration_seconds_count", name=vp) == 8
    assert value(samples, "workqueue_queue_duration_seconds_count", name=vp) == 8
    # Every pass came from an add: 4 triggers, 2 requeues, 2 retries.
    assert value(samples, "workqueue_adds_total", name=vp) == 8
    assert value(samples, "workqueue_retries_total", name=vp) == 2
    assert value(samples, "controller_runtime_active_workers", controller=vp) == 0
    # The retries waited their backoff (1 s), in the queue's delaying part, not in its depth.
    assert value(samples, "workqueue_queue_duration_seconds_sum", name=vp) < 0.5


async def test_triggers_coalesced_into_a_pending_pass_are_not_adds() -> None:
    metrics = OperatorMetrics("0")
    gate = threading.Event()

    def slow(namespace: str, name: str) -> Result:
        gate.wait(5)
        return Result()

    async with observed(metrics, slow, workers=1) as controller:
        controller.enqueue(("ns", "a"))
        await until(lambda: active(metrics) == 1)
        for _ in range(5):
            controller.enqueue(("ns", "a"))  # one more pass, not five
        gate.set()
        await until(lambda: passes(metrics) == 2)
        await asyncio.sleep(0.1)
    assert value(scrape(metrics), "workqueue_adds_total", name="videoplatform") == 2
    assert passes(metrics) == 2


async def test_depth_and_running_passes_are_read_at_scrape_time() -> None:
    metrics = OperatorMetrics("0")
    gate = threading.Event()

    def slow(namespace: str, name: str) -> Result:
        gate.wait(5)
        return Result()

    vp = "videoplatform"
    async with observed(metrics, slow, workers=1) as controller:
        for name in ("a", "b", "c"):
            controller.enqueue(("ns", name))
        await until(lambda: active(metrics) == 1)
        await asyncio.sleep(0.2)
        first = scrape(metrics)
        await asyncio.sleep(0.2)
        second = scrape(metrics)
        gate.set()
        await until(lambda: passes(metrics) == 3)
        after = scrape(metrics)

    assert value(first, "workqueue_depth", name=vp) == 2  # b and c wait for the one worker
    longest = value(first, "workqueue_longest_running_processor_seconds", name=vp)
    assert longest >= 0.2
    assert value(first, "workqueue_unfinished_work_seconds", name=vp) == pytest.approx(
        longest, abs=0.05
    )
    # The same pass, later: the scrape computes its age anew.
    assert value(second, "workqueue_longest_running_processor_seconds", name=vp) >= longest + 0.2
    assert value(after, "workqueue_depth", name=vp) == 0
    assert value(after, "controller_runtime_active_workers", controller=vp) == 0
    assert value(after, "workqueue_unfinished_work_seconds", name=vp) == 0
    # b and c waited behind a: their queue time is in the histogram's sum.
    assert value(after, "workqueue_queue_duration_seconds_sum", name=vp) >= 0.8


# -- the API requests ----------------------------------------------------------------------


class FakeApiServer(BaseHTTPRequestHandler):
    """Enough of an API server: one VideoPlatform to GET, 404 for others, 422 for a PATCH."""

    def do_GET(self) -> None:
        if self.path.endswith("/videoplatforms/demo"):
            self._answer(200, {"kind": "VideoPlatform", "metadata": {"name": "demo"}})
        else:
            self._answer(404, {"kind": "Status", "reason": "NotFound", "message": "not found"})

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(422, {"kind": "Status", "reason": "Invalid", "message": "spec.x: bad"})

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kube_at(host: str, metrics: OperatorMetrics) -> Kube:
    configuration = client.Configuration(host=f"http://{host}")
    configuration.retries = False
    return Kube(client.ApiClient(configuration), on_request=metrics.api_request)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_api_request_is_counted_by_code_method_and_host() -> None:
    metrics = OperatorMetrics("0")
    with api_server() as host:
        kube = kube_at(host, metrics)
        assert kube.get(VIDEOPLATFORM, NS, "demo") is not None
        assert kube.get(VIDEOPLATFORM, NS, "demo") is not None
        assert kube.get(VIDEOPLATFORM, NS, "other") is None
        with pytest.raises(KubeError):
            kube.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "x", "namespace": NS},
                }
            )
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(urllib3.exceptions.HTTPError):  # no answer at all
        kube_at(closed, metrics).get(VIDEOPLATFORM, NS, "demo")
    requests = series(scrape(metrics), "rest_client_requests_total")
    assert requests == {
        frozenset({("code", "200"), ("method", "GET"), ("host", host)}): 2,
        frozenset({("code", "404"), ("method", "GET"), ("host", host)}): 1,
        frozenset({("code", "422"), ("method", "PATCH"), ("host", host)}): 1,
        frozenset({("code", "<error>"), ("method", "GET"), ("host", closed)}): 1,
    }


# -- the operator's view of its platforms ----------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def platform_labels(name: str = "demo", **more: str) -> dict[str, str]:
    return {"namespace": NS, "platform": name, **more}


def with_phase(name: str, phase: str | None, ref: str = "demo") -> dict[str, Any]:
    body = crdschema.asset({**URL, "platformRef": {"name": ref}}, name=name, namespace=NS)
    body["metadata"]["uid"] = f"uid-{name}"
    if phase:
        body["status"] = {"phase": phase}
    return body


def test_platform_series_follow_what_the_reconciler_sees() -> None:
    metrics = OperatorMetrics("0")
    kube = FakeKube()
    kube.add_platform(crdschema.platform({"storage": {"emptyDir": {}}}, namespace=NS))
    reconciler = Reconciler(kube, now=lambda: NOW, view=metrics.platforms)
    reconciler.reconcile(NS, "demo")
    samples = scrape(metrics)
    phases = {
        p: value(samples, "vod_platform_phase", **platform_labels(phase=p)) for p in PLATFORM_PHASES
    }
    assert phases == {p: 1.0 if p == "Progressing" else 0.0 for p in PLATFORM_PHASES}
    assert value(samples, "vod_platform_replicas_desired", **platform_labels()) == 2
    assert value(samples, "vod_platform_replicas_ready", **platform_labels()) == 0
    assert not series(samples, "vod_platform_autoscaling_max_replicas")

    mark_deployment_ready(kube, replicas=2)
    for name, phase in [("a", "Ready"), ("b", "Ready"), ("c", "Failed"), ("d", None),
                        ("e", "Uploading"), ("f", "Ready"), ("g", "Deleting")]:  # fmt: skip
        kube.add(VIDEOASSET, with_phase(name, phase, "other" if name == "f" else "demo"))
    reconciler.reconcile(NS, "demo")
    samples = scrape(metrics)
    assert value(samples, "vod_platform_phase", **platform_labels(phase="Ready")) == 1
    assert value(samples, "vod_platform_phase", **platform_labels(phase="Progressing")) == 0
    assert value(samples, "vod_platform_replicas_ready", **platform_labels()) == 2
    assets = {p: value(samples, "vod_assets", **platform_labels(phase=p)) for p in ASSET_PHASES}
    assert assets == {"Pending": 1, "Uploading": 1, "Processing": 0, "Ready": 2, "Failed": 1}
    assert value(samples, "vod_assets_processing_oldest_seconds", **platform_labels()) == 0
    # Only platforms the operator has seen: none for "other".
    assert {dict(k)["platform"] for k in series(samples, "vod_assets")} == {"demo"}

    spec = {"storage": {"emptyDir": {}}, "autoscaling": {"enabled": True, "maxReplicas": 7}}
    kube.add_platform(crdschema.platform(spec, namespace=NS))
    reconciler.reconcile(NS, "demo")
    samples = scrape(metrics)
    assert value(samples, "vod_platform_autoscaling_max_replicas", **platform_labels()) == 7

    del kube.objects[(VIDEOPLATFORM.plural, NS, "demo")]
    assert not reconciler.reconcile(NS, "demo").found
    samples = scrape(metrics)
    assert not [k for k, _ in samples if k.startswith(("vod_platform", "vod_asset"))]


def test_a_failed_list_keeps_what_was_seen_before() -> None:
    metrics = OperatorMetrics("0")
    kube = FakeKube()
    kube.add_platform(crdschema.platform({"storage": {"emptyDir": {}}}, namespace=NS))
    kube.add(VIDEOASSET, with_phase("a", "Ready"))
    reconciler = Reconciler(kube, now=lambda: NOW, view=metrics.platforms)
    reconciler.reconcile(NS, "demo")
    mark_deployment_ready(kube, replicas=2)
    reconciler.reconcile(NS, "demo")
    kube.fail[("list", "Deployment")] = KubeError(500, "InternalError", "etcd is slow")
    kube.fail[("list", "VideoAsset")] = KubeError(500, "InternalError", "etcd is slow")
    reconciler.reconcile(NS, "demo")
    samples = scrape(metrics)
    assert value(samples, "vod_platform_replicas_ready", **platform_labels()) == 2
    assert value(samples, "vod_assets", **platform_labels(phase="Ready")) == 1


def test_a_deleted_platform_stays_gone_though_a_late_pass_saw_it() -> None:
    """The watch says DELETED while a pass that read the platform earlier still runs."""
    metrics = OperatorMetrics("0")
    kube = FakeKube()
    kube.add_platform(crdschema.platform({"storage": {"emptyDir": {}}}, namespace=NS))
    kube.add_platform(crdschema.platform({"storage": {"emptyDir": {}}}, name="kept", namespace=NS))
    kube.platform(NS, "kept")["metadata"]["uid"] = "uid-kept"
    reconciler = Reconciler(kube, now=lambda: NOW, view=metrics.platforms)
    reconciler.reconcile(NS, "kept")
    uid = kube.platform(NS, "demo")["metadata"]["uid"]
    metrics.platforms.forget_platform(NS, "demo", uid)  # the DELETED event
    reconciler.reconcile(NS, "demo")  # the late pass: it still reads the old object
    platforms = {
        dict(k)["platform"] for k in series(scrape(metrics), "vod_platform_replicas_desired")
    }
    assert platforms == {"kept"}
    # Created again under the same name: a new uid, seen again.
    recreated = copy.deepcopy(kube.platform(NS, "demo"))
    recreated["metadata"]["uid"] = "uid-new"
    kube.add_platform(recreated)
    reconciler.reconcile(NS, "demo")
    platforms = {
        dict(k)["platform"] for k in series(scrape(metrics), "vod_platform_replicas_desired")
    }
    assert platforms == {"kept", "demo"}


def test_processing_age_and_packaging_time_come_from_the_asset_passes() -> None:
    clock = Clock(EPOCH_NOW)
    metrics = OperatorMetrics("0", clock=clock)
    kube = FakeKube()
    kube.add_platform(crdschema.platform(PVC, namespace=NS))
    kube.add(VIDEOASSET, crdschema.asset(URL, name="intro", namespace=NS))
    platforms = Reconciler(kube, now=lambda: NOW, view=metrics.platforms)
    assets = AssetReconciler(kube, now=lambda: NOW, poll_seconds=5, view=metrics.platforms)
    labels = platform_labels()

    assets.reconcile(NS, "intro")  # creates the Job: Processing from now on
    platforms.reconcile(NS, "demo")  # the asset's phase change brings a platform pass
    clock.now += 30
    samples = scrape(metrics)
    assert value(samples, "vod_assets", **platform_labels(phase="Processing")) == 1
    assert value(samples, "vod_assets_processing_oldest_seconds", **labels) == 30

    (name,) = jobs_of(kube)
    job = kube.child("Job", NS, name)
    job["status"] = {"startTime": "2025-12-31T23:59:50Z"}  # the pod started 10 s before NOW
    assets.reconcile(NS, "intro")
    assert value(scrape(metrics), "vod_assets_processing_oldest_seconds", **labels) == 40

    revision = name.rsplit("-", 1)[1]
    finish(kube, name, outcome="Complete", message=succeeded(revision), code=0)
    job = kube.child("Job", NS, name)
    job["status"].update(startTime="2025-12-31T23:59:50Z", completionTime="2026-01-01T00:01:20Z")
    assets.reconcile(NS, "intro")  # Ready: packaging took 90 s
    assets.reconcile(NS, "intro")  # at rest: not observed twice
    platforms.reconcile(NS, "demo")
    samples = scrape(metrics)
    assert value(samples, "vod_assets", **platform_labels(phase="Ready")) == 1
    assert value(samples, "vod_assets_processing_oldest_seconds", **labels) == 0
    assert value(samples, "vod_asset_packaging_duration_seconds_count", **labels) == 1
    assert value(samples, "vod_asset_packaging_duration_seconds_sum", **labels) == 90
    histogram = "vod_asset_packaging_duration_seconds_bucket"
    assert value(samples, histogram, **platform_labels(le="60.0")) == 0
    assert value(samples, histogram, **platform_labels(le="120.0")) == 1
    assert value(samples, histogram, **platform_labels(le="+Inf")) == 1


# -- settings and the server -----------------------------------------------------------------


def test_metrics_settings() -> None:
    assert (Options().metrics_port, Options().metrics_bind_address) == (8080, "0.0.0.0")
    options = Options.from_env(
        {"VOD_OPERATOR_METRICS_PORT": "0", "VOD_OPERATOR_METRICS_BIND_ADDRESS": "127.0.0.1"}
    )
    assert (options.metrics_port, options.metrics_bind_address) == (0, "127.0.0.1")
    with pytest.raises(ValueError, match="VOD_OPERATOR_METRICS_PORT"):
        Options.from_env({"VOD_OPERATOR_METRICS_PORT": "70000"})


def test_metrics_server_serves_the_registry_and_stops() -> None:
    metrics = OperatorMetrics("0.1.0")
    metrics.queue("videoplatform", 4)
    metrics.queue("videoasset", 4)
    server = MetricsServer(metrics.registry, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
    finally:
        server.close()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "vod_operator_build_info",
        "workqueue_depth",
        "controller_runtime_reconcile",
    } <= families
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(server.url, timeout=2)


def test_the_startup_serves_metrics_unless_port_0_and_stops_on_a_taken_port() -> None:
    metrics = OperatorMetrics("0")
    assert handlers._serve_metrics(metrics, Options(metrics_port=0)) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = Options(metrics_port=port, metrics_bind_address="127.0.0.1")
        with pytest.raises(kopf.PermanentError, match="VOD_OPERATOR_METRICS_PORT"):
            handlers._serve_metrics(metrics, options)
