"""Autoscaling on viewers and egress through KEDA, on real pods (issue 21, part 4).

KEDA (the `keda` fixture: built from its Go module, local images) scales one platform whose
spec.autoscaling sets a low per-pod target and a CPU target no test load reaches, so CPU cannot
be why it scales:

1. In flight: slow clients on the host hold open downloads (each reads 128 KiB/s) through the
   platform's ClusterIP: 1 -> 3 pods; they leave: back to 1. While it scales in, one client per
   pod downloads the whole file from that pod's IP, and on each pod that is removed one more
   download begins during its preStop pause; each must arrive complete and correct although the
   server closes its port (SIGTERM) while it is still being sent: preStop and the drain keep
   transfers within the grace period.
2. Egress: the platform's target is switched to bytes/s and the test waits until the platform is
   at rest on it: the ScaledObject's own egress query below half the target and KEDA's HPA at
   1 -> 1 for 15 s on end (the first scenario's downloads out of the rate window; the HPA's
   reading alone cannot tell, as until KEDA updates it, it is the in-flight trigger's). Then a few
   faster readers: 1 -> 3, they stop: back to 1 once the rate window has emptied. The body-bytes
   counter grows while a response is sent, so the rate follows these long downloads as they run.

Each scenario prints its timeline: seconds, KEDA's HPA (current -> desired replicas), the value
of the Prometheus trigger as KEDA's HPA last read it (what it decided on), the in-flight sum and
egress rate Prometheus holds, and CPU: the pods' sum from metrics.k8s.io (metrics-server, 10 s
resolution) and the utilisation KEDA's HPA computed from it. Scale-out is asserted on the HPA's
own reading: each scenario starts at one pod wanting one, and the row where the HPA first wants
more must show its trigger above target and its CPU below the CPU target.

Load is bounded: at most 8 + 3 connections, to the test's own Service IP and pod IPs, for at
most a few minutes; every client stops when its scenario ends or fails.
"""

from __future__ import annotations

import calendar
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes.utils import parse_quantity

from localcluster.promapi import Prometheus
from tests.cluster.conftest import Namespace, OperatorProcess, eventually
from tests.cluster.podclient import pattern
from tests.cluster.test_operator import wait_ready
from tests.cluster.test_real_pods import STREAM_UID, offer_media, pvc_platform, withdraw_media

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane, pytest.mark.real_node]

NAME = "elastic"
BIG = "big.bin"
#: Far more than the socket buffers hold (the server's send buffer grows to 4 MiB; the
#: clients' receive buffer is pinned at 64 KiB), so a slow reader keeps its request in flight.
BIG_SIZE = 64 * 1024 * 1024
BODY = pattern(BIG_SIZE)
PORT = 8080
PROMETHEUS = "http://prometheus-k8s.monitoring.svc:9090"
CPU_TARGET = 90
CPU_REQUEST_MILLI = 200
IN_FLIGHT_TARGET = 2
EGRESS_TARGET = 4 * 1024 * 1024
SLOW_CLIENTS = 8
SLOW_RATE = 128 * 1024
FAST_CLIENTS = 3
FAST_RATE = 6 * 1024 * 1024
#: A drain-check download lasts about 12 s: well inside the 20 s the server grants in-flight
#: responses after SIGTERM (shutdownGraceSeconds), itself after the 5 s preStop pause, all
#: inside the 30 s grace period.
CHECK_RATE = BIG_SIZE / 12
PRE_STOP_SECONDS = 5
GRACE_SECONDS = 30

SPEC = f"""
monitoring: {{enabled: true, scrapeInterval: 5s}}
resources:
  requests: {{cpu: {CPU_REQUEST_MILLI}m, memory: 64Mi}}
  limits: {{cpu: "1", memory: 512Mi}}
autoscaling:
  enabled: true
  minReplicas: 1
  maxReplicas: 3
  targetCPUUtilizationPercentage: {CPU_TARGET}
  targetInFlightRequestsPerPod: {IN_FLIGHT_TARGET}
  prometheus: {{serverAddress: "{PROMETHEUS}"}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      selectPolicy: Max
      policies: [{{type: Pods, value: 2, periodSeconds: 5}}]
    scaleDown:
      stabilizationWindowSeconds: 10
      selectPolicy: Max
      policies: [{{type: Pods, value: 1, periodSeconds: 10}}]
"""


# -- clients on the host: raw HTTP/1.1, a throttled read, the body checked -----------------------


@dataclass
class Download:
    target: str
    began: float
    ended: float = 0.0
    received: int = 0
    ok: bool = False
    error: str = ""


def download(host: str, rate: float, stop: threading.Event | None = None) -> Download:
    """GET /big.bin from host:PORT, reading at most `rate` bytes/s, checking every byte; stops
    early (ok False, no error) when `stop` is set: the client leaves."""
    record = Download(host, time.time())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(20)
    offset = 0
    try:
        sock.connect((host, PORT))
        sock.sendall(f"GET /{BIG} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the headers")
            head += chunk
        head, body = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise ConnectionError(f"status {status!r}")
        start = time.monotonic()
        while True:
            if body:
                if BODY[offset : offset + len(body)] != body:
                    raise ValueError(f"wrong bytes at {offset}")
                offset += len(body)
            if offset >= BIG_SIZE:
                break
            if stop is not None and stop.is_set():
                return record
            ahead = start + offset / rate - time.monotonic()
            if ahead > 0:
                time.sleep(min(ahead, 0.5))
            body = sock.recv(64 * 1024)
            if not body:
                raise ConnectionError(f"cut after {offset} of {BIG_SIZE} bytes")
        record.ok = True
    except (OSError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.received = offset
        record.ended = time.time()
        sock.close()
    return record


class Readers:
    """`count` clients downloading the file again and again through `host` until stopped."""

    def __init__(self, host: str, count: int, rate: float) -> None:
        self.stop = threading.Event()
        self.done: list[Download] = []
        self.threads = [
            threading.Thread(target=self._run, args=(host, rate), daemon=True) for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, host: str, rate: float) -> None:
        while not self.stop.is_set():
            self.done.append(download(host, rate, self.stop))

    def leave(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)


# -- what the cluster shows over time --------------------------------------------------------------


@dataclass
class Row:
    """One sample of the timeline."""

    t: float
    current: int
    desired: int
    trigger: float  # the Prometheus trigger's value as KEDA's HPA read it (per pod); -1: none yet
    in_flight: float
    egress: float  # bytes/s
    cpu_milli: int
    cpu_percent: str  # as KEDA's HPA computed it, or "-"


def hpa_reading(status: dict[str, Any]) -> tuple[float, str]:
    """(the External metric's current average value, the CPU utilisation) from an HPA status."""
    trigger, percent = -1.0, "-"
    for metric in status.get("currentMetrics") or []:
        if metric.get("type") == "External":
            trigger = float(parse_quantity(metric["external"]["current"]["averageValue"]))
        if metric.get("type") == "Resource":
            value = metric["resource"]["current"].get("averageUtilization")
            percent = "-" if value is None else f"{value}%"
    return trigger, percent


@dataclass
class Timeline:
    """Samples every 2 s of KEDA's HPA, Prometheus and the pods' CPU."""

    ns: Namespace
    prometheus: Prometheus
    began: float = field(default_factory=time.monotonic)
    rows: list[Row] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _value(self, query: str) -> float:
        try:
            result = self.prometheus.query(query)
        except Exception:
            return -1.0
        return sum(float(r["value"][1]) for r in result)

    def _run(self) -> None:
        while not self.stop.wait(2.0):
            try:
                self._sample()
            except Exception as exc:  # a missed sample must not end the timeline
                print(f"timeline sample failed: {exc!r}")

    def _sample(self) -> None:
        selector = f'{{namespace="{self.ns.name}", platform="{NAME}"}}'
        hpa = self.ns.kubectl("get", "hpa", f"keda-hpa-{NAME}-stream", "-o", "json", check=False)
        status = json.loads(hpa.stdout).get("status", {}) if hpa.returncode == 0 else {}
        trigger, cpu_percent = hpa_reading(status)
        pods = self.ns.cluster.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.ns.name}/pods",
            check=False,
        )  # fmt: skip
        milli = 0
        if pods.returncode == 0:
            for item in json.loads(pods.stdout).get("items", []):
                if item["metadata"]["name"].startswith(f"{NAME}-stream-"):
                    for container in item["containers"]:
                        milli += cpu_milli(container["usage"]["cpu"])
        self.rows.append(
            Row(
                t=time.monotonic() - self.began,
                current=int(status.get("currentReplicas", 0)),
                desired=int(status.get("desiredReplicas", 0)),
                trigger=trigger,
                in_flight=self._value(f"sum(vod_http_requests_in_flight{selector})"),
                egress=self._value(f"sum(rate(vod_http_response_body_bytes_total{selector}[1m]))"),
                cpu_milli=milli,
                cpu_percent=cpu_percent,
            )
        )

    def replicas(self) -> int:
        return self.rows[-1].current if self.rows else 0

    def first_scale_out(self) -> Row:
        """The first row where KEDA's HPA wants more than one pod."""
        return next(row for row in self.rows if row.desired > 1)

    def wait(self, what: str, check: Callable[[int], bool], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not (self.rows and check(self.replicas())):
            if time.monotonic() > deadline:
                self.print(f"TIMED OUT waiting for {what}")
                raise AssertionError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - self.began

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def print(self, title: str, trigger_unit: float = 1.0) -> None:
        print(f"\n{title}")
        print(
            "     t  replicas  trigger/pod (HPA)  in-flight  egress MiB/s  CPU m (pods sum)"
            "  CPU % of request (HPA)"
        )
        for r in self.rows:
            trigger = "-" if r.trigger < 0 else f"{r.trigger / trigger_unit:.1f}"
            print(
                f"{r.t:6.0f}  {r.current} -> {r.desired}  {trigger:>17}  {r.in_flight:9.0f}"
                f"  {r.egress / 2**20:12.1f}  {r.cpu_milli:16d}  {r.cpu_percent:>22}"
            )


def below_cpu_target(row: Row) -> bool:
    return row.cpu_percent == "-" or int(row.cpu_percent.rstrip("%")) < CPU_TARGET


def cpu_milli(quantity: str) -> int:
    if quantity.endswith("n"):
        return int(quantity[:-1]) // 1_000_000
    if quantity.endswith("u"):
        return int(quantity[:-1]) // 1_000
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return int(float(quantity) * 1000)


# -- the drain check -------------------------------------------------------------------------------


@dataclass
class PodCheck:
    """Downloads from one pod's IP, back to back, until the pod is deleted; then, at once, one
    more, begun during its preStop pause, while probing when its port closes (SIGTERM)."""

    pod: str
    ip: str
    downloads: list[Download] = field(default_factory=list)
    deleted_at: float = 0.0
    port_closed_at: float = 0.0
    last: Download | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.threads = [threading.Thread(target=self._downloads, daemon=True)]
        self.threads[0].start()

    def _downloads(self) -> None:
        while not self.stop.is_set() and not self.deleted_at:
            self.downloads.append(download(self.ip, CHECK_RATE))

    def deleted(self, meta: dict[str, Any]) -> None:
        """The pod is being deleted: deletionTimestamp is when its grace period ends, so the
        deletion came deletionGracePeriodSeconds earlier (then preStop; SIGTERM follows it)."""
        if self.deleted_at:
            return
        end = calendar.timegm(time.strptime(meta["deletionTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        self.deleted_at = end - int(meta["deletionGracePeriodSeconds"])
        last = threading.Thread(target=self._last_download, daemon=True)
        last.start()
        self.threads.append(last)

    def _last_download(self) -> None:
        box: list[Download] = []
        last = threading.Thread(target=lambda: box.append(download(self.ip, CHECK_RATE)))
        last.start()
        while last.is_alive():
            if not self.port_closed_at:
                try:
                    socket.create_connection((self.ip, PORT), timeout=0.5).close()
                except OSError:
                    self.port_closed_at = time.time()
            last.join(timeout=0.5)
        self.last = box[0]

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=GRACE_SECONDS + 10)


def watch_deletions(ns: Namespace, checks: list[PodCheck], stop: threading.Event) -> None:
    """Tell each check when its pod is being deleted (one listing every 0.5 s for all)."""
    by_name = {c.pod: c for c in checks}
    while not stop.wait(0.5):
        listed = ns.kubectl(
            "get", "pods", "-l", f"app.kubernetes.io/instance={NAME}", "-o", "json", check=False
        )
        if listed.returncode != 0:
            continue
        for pod in json.loads(listed.stdout)["items"]:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp") and meta["name"] in by_name:
                by_name[meta["name"]].deleted(meta)


def ready_pods(ns: Namespace) -> dict[str, str]:
    pods = json.loads(
        ns.kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={NAME}", "-o", "json").stdout
    )["items"]
    return {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    }


# -- the test --------------------------------------------------------------------------------------


@pytest.fixture
def platform(namespace: Namespace, tmp_path: Path) -> Iterator[str]:
    """The platform, Ready with its ScaledObject's HPA; yields its ClusterIP."""
    folder = tmp_path / "media"
    pv = offer_media(namespace, folder)
    (folder / BIG).write_bytes(BODY)
    os.chown(folder / BIG, STREAM_UID, STREAM_UID)
    try:
        namespace.apply(pvc_platform(NAME, SPEC))
        wait_ready(namespace, NAME, timeout=180)
        eventually(lambda: namespace.exists("hpa", f"keda-hpa-{NAME}-stream"), timeout=90)
        yield namespace.get("service", f"{NAME}-stream")["spec"]["clusterIP"]
    finally:
        withdraw_media(namespace, pv)


#: Two scenarios of a few minutes each, after KEDA's install on first use.
@pytest.mark.timeout(900)
def test_keda_scales_out_on_connections_and_egress_not_cpu_and_scale_in_keeps_transfers(
    keda: Prometheus, operator: OperatorProcess, namespace: Namespace, platform: str
) -> None:
    began = time.monotonic()
    so = namespace.get("scaledobject", f"{NAME}-stream")
    assert [t["type"] for t in so["spec"]["triggers"]] == ["cpu", "prometheus"]

    # 1. In flight: slow readers hold connections; 1 -> 3 pods, then back once they leave.
    timeline = Timeline(namespace, keda)
    readers = Readers(platform, SLOW_CLIENTS, SLOW_RATE)
    checks: list[PodCheck] = []
    watching = threading.Event()
    try:
        timeline.wait("one pod at the start", lambda r: r == 1, 60)
        out = timeline.wait("3 pods on connections", lambda r: r == 3, 120)
        eventually(lambda: len(ready_pods(namespace)) == 3, timeout=60, interval=1)
        checks = [PodCheck(pod, ip) for pod, ip in ready_pods(namespace).items()]
        watcher = threading.Thread(
            target=watch_deletions, args=(namespace, checks, watching), daemon=True
        )
        watcher.start()
        time.sleep(3)  # every check has a download in flight
        readers.leave()
        back = timeline.wait("back to 1 pod", lambda r: r == 1, 150)
        eventually(lambda: sum(bool(c.deleted_at) for c in checks) == 2, timeout=30, interval=1)
    finally:
        readers.leave()
        watching.set()
        for check in checks:
            check.finish()
        timeline.finish()
    timeline.print(f"in flight (target {IN_FLIGHT_TARGET}/pod, CPU target {CPU_TARGET}%): "
                   f"3 pods after {out:.0f} s, 1 after {back:.0f} s")  # fmt: skip
    assert timeline.rows[0].desired <= 1, timeline.rows[0]  # it starts at rest
    first_out = timeline.first_scale_out()
    assert first_out.trigger > IN_FLIGHT_TARGET, first_out  # the connections asked for more pods
    assert below_cpu_target(first_out), first_out

    print("\nscale-in download check (64 MiB per download, about 12 s each):")
    removed = [c for c in checks if c.deleted_at]
    assert len(removed) == 2
    for check in checks:
        for d in check.downloads + ([check.last] if check.last else []):
            assert d.ok, (check.pod, d)
    for check in removed:
        assert check.last is not None
        at_deletion = [d for d in check.downloads if d.began <= check.deleted_at <= d.ended]
        sigterm = check.port_closed_at
        print(
            f"  {check.pod}: deleted at {check.deleted_at - check.last.began:+.1f} s from the last"
            f" download's start; port closed (SIGTERM) at {sigterm - check.last.began:+.1f} s;"
            f" it ended at {check.last.ended - check.last.began:+.1f} s, {check.last.received}"
            f" bytes, correct; {len(at_deletion)} download(s) in flight at the deletion, complete"
        )
        assert at_deletion, "no download was in flight when the pod was deleted"
        assert sigterm, "the port never closed while the last download ran"
        assert check.last.began < sigterm < check.last.ended, "not in flight at SIGTERM"
        assert check.last.ended < check.deleted_at + GRACE_SECONDS

    # 2. Egress: the same platform scales on bytes/s instead.
    namespace.kubectl(
        "patch", "vp", NAME, "--type=merge", "-p",
        json.dumps({"spec": {"autoscaling": {"targetInFlightRequestsPerPod": None,
                                             "targetEgressBytesPerSecondPerPod": "4Mi"}}}),
    )  # fmt: skip

    def egress_trigger() -> bool:
        triggers = namespace.get("scaledobject", f"{NAME}-stream")["spec"]["triggers"]
        return any("vod_http_response_body_bytes_total" in t["metadata"].get("query", "")
                   for t in triggers)  # fmt: skip

    eventually(egress_trigger, timeout=30)
    (query,) = [
        t["metadata"]["query"]
        for t in namespace.get("scaledobject", f"{NAME}-stream")["spec"]["triggers"]
        if "vod_http_response_body_bytes_total" in t["metadata"].get("query", "")
    ]
    timeline = Timeline(namespace, keda)
    quiet_since: list[float] = []

    def at_rest() -> bool:
        """The egress KEDA reads is low and its HPA has wanted one pod for 15 s on end."""
        egress = sum(float(r["value"][1]) for r in keda.query(query))
        last = timeline.rows[-1] if timeline.rows else None
        if last is None or (last.current, last.desired) != (1, 1) or egress >= EGRESS_TARGET / 2:
            quiet_since.clear()
            return False
        quiet_since[:] = quiet_since or [time.monotonic()]
        return time.monotonic() - quiet_since[0] >= 15

    try:
        eventually(at_rest, timeout=150, interval=1)
    finally:
        timeline.finish()
    timeline = Timeline(namespace, keda)
    readers = Readers(platform, FAST_CLIENTS, FAST_RATE)
    try:
        out = timeline.wait("3 pods on egress", lambda r: r == 3, 120)
        readers.leave()
        back = timeline.wait("back to 1 pod", lambda r: r == 1, 150)
    finally:
        readers.leave()
        timeline.finish()
    timeline.print(f"egress (target 4 MiB/s per pod, CPU target {CPU_TARGET}%; trigger in MiB/s): "
                   f"3 pods after {out:.0f} s, 1 after {back:.0f} s", 2**20)  # fmt: skip
    assert timeline.rows[0].desired <= 1, timeline.rows[0]  # it starts at rest
    first_out = timeline.first_scale_out()
    assert first_out.trigger > EGRESS_TARGET, first_out
    assert below_cpu_target(first_out), first_out
    print(f"\nboth scenarios in {time.monotonic() - began:.0f} s")
