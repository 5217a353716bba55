"""Operator benchmark on a fresh local control plane (make bench-operator).

Measures, and prints as a table:
  1. seconds from `kubectl apply` to Ready for one VideoPlatform;
  2. seconds from `kubectl apply` of --count VideoPlatforms (one multi-document apply) to all
     Ready, progress every 10 s, and the CPU seconds per platform that the operator and each
     control-plane process spent meanwhile;
  3. write requests to the API server during one idle minute with them present (target 0), both
     for everything and for the resources the operator touches, by resource and verb;
  4. the operator's resident memory (RSS) with them present;
  5. an operator restart with them present: seconds until it has reconciled every platform and
     its queue is empty, and the writes meanwhile (target 0);
  6. the floor, on a second fresh control plane: the same VideoPlatforms applied, their children
     rendered by the operator's own code and applied straight to the API server by as many
     threads as the operator has workers, until every Deployment has a ready pod; the operator's
     time as a ratio of it.
Starts its own control planes through `localcluster`, runs the operator as a subprocess, cleans
up, and is bounded in time (every wait has a timeout; the whole run is capped). A run that runs
out of time prints what it measured (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import yaml

from vod_operator.kube import WRITTEN_RESOURCES, Kube
from vod_operator.options import Options

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"  # both CRDs: the operator watches VideoAssets too
NAMESPACE = "bench"
#: A resync this often makes the idle minute include full read-only passes of every platform.
RESYNC_SECONDS = 20
#: The resources the operator writes (children, its own status, Events).
OPERATOR_RESOURCES = WRITTEN_RESOURCES
#: Control-plane processes whose CPU is shown per platform (pid files of the local cluster).
COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def platform(name: str) -> str:
    return (
        "apiVersion: videoplatform.io/v1alpha1\nkind: VideoPlatform\n"
        f"metadata: {{name: {name}, namespace: {NAMESPACE}}}\n"
        "spec: {replicas: 1, storage: {emptyDir: {}}}\n"
    )


class Bench:
    def __init__(self, cluster: Any, workdir: Path, deadline: float) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.deadline = deadline

    def remaining(self, wanted: float) -> int:
        left = self.deadline - time.monotonic()
        if left < 5:
            raise TimeoutError("benchmark time budget exhausted")
        return int(min(wanted, left))

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = self.cluster.kubectl(*args, input=input, timeout=self.remaining(600) + 30)
        return str(result.stdout)

    @contextmanager
    def operator(
        self, metrics_port: int = 0, resync: float | None = RESYNC_SECONDS
    ) -> Iterator[subprocess.Popen[bytes]]:
        """The operator as a subprocess; `resync` None keeps its default interval."""
        log = (self.workdir / "operator.log").open("ab")
        env = dict(
            self.cluster.env,
            PYTHONUNBUFFERED="1",
            VOD_OPERATOR_METRICS_PORT=str(metrics_port),
            VOD_OPERATOR_METRICS_BIND_ADDRESS="127.0.0.1",
        )
        if resync is not None:
            env["VOD_OPERATOR_RESYNC_SECONDS"] = str(resync)
        liveness = f"http://127.0.0.1:{free_port()}/healthz"  # two benches may run at once
        proc = subprocess.Popen(
            [sys.executable, "-m", "vod_operator", "--liveness", liveness],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: _http_ok(liveness), self.remaining(60))
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def apply_platforms(
        self, names: list[str], then: Callable[[dict[str, Any]], None] | None = None
    ) -> float:
        """Create every platform, as many at once as the operator has workers (as a GitOps
        controller applies; `kubectl apply` of 1000 files, one after the other, took longer
        here than the operator needs for them); `then` each created platform (as the API server
        returned it: defaulted, with its uid). The seconds it took."""
        from concurrent.futures import ThreadPoolExecutor

        from kubernetes import client

        from vod_operator import naming

        started = time.monotonic()
        api = client.CustomObjectsApi(self.api_client())

        def create(name: str) -> None:
            body = yaml.safe_load(platform(name))
            created = api.create_namespaced_custom_object(
                naming.GROUP, naming.VERSION, NAMESPACE, naming.PLURAL, body
            )
            if then is not None:
                then(cast(dict[str, Any], created))

        with ThreadPoolExecutor(Options().workers) as pool:
            list(pool.map(create, names))
        return time.monotonic() - started

    def api_client(self) -> Any:
        """An API client (the official one, as the operator's) for this cluster."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(str(self.cluster.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    def apply_to_ready(self, names: list[str], timeout: float) -> tuple[float, float]:
        """Seconds from the first apply to every one of `names` Ready, watched (one watch, not a
        poll that would load the API server), progress printed every 10 s, and seconds the
        applies took; TimeoutError naming how many were Ready when the time ran out.
        (`kubectl wait` is no use at this scale: its --timeout is per object.)"""
        ready = '{.status.conditions[?(@.type=="Ready")].status}'
        with Watched(self.cluster, "vp", ready, lambda value: value == "True") as watched:
            started = time.monotonic()
            applied = self.apply_platforms(names)
            watched.wait_all(set(names), started, started + self.remaining(timeout), "Ready")
            return time.monotonic() - started, applied

    def settled(self, port: int, count: int, timeout: float) -> float:
        """Seconds until the operator on `port` reconciled `count` platforms and has nothing
        queued or running (from its own /metrics)."""
        started = time.monotonic()
        deadline = started + self.remaining(timeout)
        while time.monotonic() < deadline:
            samples = _metrics(f"http://127.0.0.1:{port}/metrics")
            done = reconciles(port, samples)
            busy = sum(
                v for (n, labels), v in samples.items()
                if n in ("workqueue_depth", "controller_runtime_active_workers")
                and 'videoplatform' in labels
            )  # fmt: skip
            if done >= count and busy == 0:
                return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"the restarted operator had not settled after {timeout:.0f} s")

    def phases(self) -> str:
        """How many VideoPlatforms are in each phase, e.g. `Ready 300, Failed 1`."""
        listed = json.loads(self.kubectl("get", "vp", "-n", NAMESPACE, "-o", "json"))["items"]
        counts = Counter(str(vp.get("status", {}).get("phase", "-")) for vp in listed)
        return ", ".join(f"{phase} {n}" for phase, n in counts.most_common())

    def idle_writes(self, seconds: int) -> tuple[int, int, dict[tuple[str, str], int]]:
        """(all writes but the control plane's own leases, writes to the operator's kinds, the
        writes by resource and verb: what they were)."""
        before = self.write_counts()
        time.sleep(seconds)
        after = self.write_counts()
        delta = {key: n - before.get(key, 0) for key, n in after.items() if n > before.get(key, 0)}
        total = sum(n for (resource, _), n in delta.items() if resource != "leases")
        ours = sum(n for (resource, _), n in delta.items() if resource in OPERATOR_RESOURCES)
        return total, ours, delta

    def write_counts(self) -> dict[tuple[str, str], int]:
        """apiserver_request_total for write verbs, summed per (resource, verb) (from /metrics)."""
        text = self.kubectl("get", "--raw", "/metrics")
        counts: dict[tuple[str, str], int] = {}
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels, _, value = line.rpartition(" ")
            fields = dict(
                part.split("=", 1)
                for part in labels[len("apiserver_request_total{") : -1].split(",")
            )
            verb = fields.get("verb", "").strip('"')
            if verb in {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}:
                key = (fields.get("resource", "").strip('"'), verb)
                counts[key] = counts.get(key, 0) + int(float(value))
        return counts


class Watched:
    """A field of every object of a resource in the bench namespace, followed with one
    `kubectl get --watch` (started again should it end) and checked by `done`."""

    def __init__(
        self, cluster: Any, resource: str, jsonpath: str, done: Callable[[str], bool]
    ) -> None:
        self.args = [
            "kubectl", "get", resource, "-n", NAMESPACE, "--watch", "-o",
            f'jsonpath={{.metadata.name}}{{" "}}{jsonpath}{{"\\n"}}',
        ]  # fmt: skip
        self.env = cluster.env
        self.done = done
        self.state: dict[str, bool] = {}
        self.stopped = threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Watched:
        threading.Thread(target=self._follow, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def _follow(self) -> None:
        while not self.stopped.is_set():
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True,
            )  # fmt: skip
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                name, _, value = line.strip().partition(" ")
                self.state[name] = self.done(value)
            self.proc.wait()
            self.stopped.wait(0.5)

    def wait_all(self, names: set[str], started: float, deadline: float, what: str) -> None:
        """Until every one of `names` is done; progress every 10 s; TimeoutError at `deadline`."""
        shown = started
        while (done := sum(self.state.get(n, False) for n in names)) < len(names):
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{done} of {len(names)} {what} after {now - started:.0f} s")
            if len(names) > 1 and now - shown >= 10:
                print(f"  {done}/{len(names)} {what} after {now - started:.0f} s", flush=True)
                shown = now
            time.sleep(0.1)


def _metrics(url: str) -> dict[tuple[str, str], float]:
    """Prometheus text samples {(name, labels text): value}; empty while not served."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            samples[(name, labels)] = float(value)
    return samples


def reconciles(port: int, samples: dict[tuple[str, str], float] | None = None) -> float:
    """VideoPlatform passes the operator on `port` ran so far (its own counter)."""
    if samples is None:
        samples = _metrics(f"http://127.0.0.1:{port}/metrics")
    return sum(
        v for (n, labels), v in samples.items()
        if n == "controller_runtime_reconcile_total" and '"videoplatform"' in labels
    )  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def component_pids(cluster: Any) -> dict[str, int]:
    """The local control plane's processes by name (from its pid files)."""
    pids: dict[str, int] = {}
    for name in COMPONENTS:
        for pid_file in Path(cluster.kubeconfig).parent.rglob(f"pids/{name}.pid"):
            pids[name] = int(pid_file.read_text().strip())
    return pids


class CpuMeter:
    """CPU seconds that some processes spend between `start()` and `per(count)`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def per(self, count: int) -> str:
        spent = {n: cpu_seconds(p) - self.before.get(n, 0.0) for n, p in self.pids.items()}
        return ", ".join(f"{n} {1000 * s / count:.0f}" for n, s in spent.items())


def wait_for(check: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError("condition not met")


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(
    cluster: Any, workdir: Path, budget: float, count: int, idle: int, rows: list[tuple[str, str]]
) -> None:
    """Measure, appending each figure to `rows` as soon as it is known (so a run that runs out
    of time still has what it measured)."""
    bench = Bench(cluster, workdir, time.monotonic() + budget)
    bench.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.wait_established("crd/videoplatforms.videoplatform.io")
    bench.kubectl("create", "namespace", NAMESPACE)
    port = free_port()
    with bench.operator(metrics_port=port) as proc:
        one, _ = bench.apply_to_ready(["single"], timeout=120)
        rows.append(("apply -> Ready, 1 VideoPlatform", f"{one:.1f} s"))
        names = [f"vp-{i:02d}" for i in range(count)]
        meter = CpuMeter({"operator": proc.pid, **component_pids(cluster)})
        meter.start()
        passes = reconciles(port)
        many, applied = bench.apply_to_ready(names, timeout=600)
        rows.append((f"apply -> all Ready, {count} VideoPlatforms at once", f"{many:.1f} s"))
        rows.append(("  of which applying them (the client)", f"{applied:.1f} s"))
        rows.append(("  CPU ms per platform meanwhile", meter.per(count)))
        rows.append(
            ("  passes per platform meanwhile", f"{(reconciles(port) - passes) / count:.1f}")
        )
        # Ready says the pods serve; a child the API server refused shows as phase Failed.
        rows.append((f"phases of the {count + 1} once Ready", bench.phases()))
        time.sleep(15)  # let the last status echoes and pod readiness settle
        total, ours, by_kind = bench.idle_writes(idle)
        present = count + 1
        where = f"{idle} s idle, {present} present, resync every {RESYNC_SECONDS} s"
        rows.append((f"API writes, {where} (all but leases)", str(total)))
        rows.append((f"API writes, {where} (operator's kinds)", str(ours)))
        what = ", ".join(f"{r} {v} {n}" for (r, v), n in sorted(by_kind.items()) if r != "leases")
        rows.append(("  of which (resource verb count)", what or "none"))
        rows.append((f"operator RSS with {present} present", f"{rss_mib(proc.pid):.0f} MiB"))
    before = bench.write_counts()
    with bench.operator(metrics_port=port, resync=None) as proc:  # its first passes only
        settle = bench.settled(port, present, timeout=300)
        after = bench.write_counts()
        rss = rss_mib(proc.pid)
    writes = sum(n - before.get(k, 0) for k, n in after.items() if k[0] in OPERATOR_RESOURCES)
    rows.append((f"restart with {present} present: all reconciled, queue empty", f"{settle:.1f} s"))
    rows.append(("  API writes meanwhile (operator's kinds)", str(writes)))
    rows.append(("  operator RSS then", f"{rss:.0f} MiB"))


def floor(cluster: Any, budget: float, count: int, rows: list[tuple[str, str]]) -> float:
    """Seconds for the API server (and the controllers behind it) to take what the operator
    writes for `count` platforms, applied straight with the operator's worker count; the
    children come from the operator's own renderer, owned by the platforms."""
    from vod_operator import naming, render
    from vod_operator.autoscaling import MetricsApis

    bench = Bench(cluster, Path(cluster.kubeconfig).parent, time.monotonic() + budget)
    bench.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.wait_established("crd/videoplatforms.videoplatform.io")
    bench.kubectl("create", "namespace", NAMESPACE)
    kube = Kube(bench.api_client())
    names = [f"vp-{i:02d}" for i in range(count)]
    inputs = render.RenderInputs(
        signing_keys={"k-floor": "Zmxvb3ItYmVuY2gta2V5LW9mLTMyLWJ5dGVzLWxvbmc="},
        monitoring_available=False,
        metrics_apis=MetricsApis(),
    )

    def materialise(platform: dict[str, Any]) -> None:
        for manifest in render.render(platform, inputs):
            kube.apply(manifest)
        kube.apply_status(NAMESPACE, platform["metadata"]["name"], {"phase": "Pending"})

    available = "{.status.readyReplicas}"
    with Watched(cluster, "deploy", available, lambda value: value not in ("", "0")) as watched:
        started = time.monotonic()
        applied = bench.apply_platforms(names, then=materialise)
        wanted = {naming.ChildNames.of(n).stream for n in names}
        watched.wait_all(wanted, started, started + bench.remaining(600), "Deployments ready")
        took = time.monotonic() - started
    rows.append((f"floor: {count} platforms and their children applied", f"{applied:.1f} s"))
    rows.append(("floor: ... and every Deployment with a ready pod", f"{took:.1f} s"))
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--budget-seconds", type=float, default=900)
    parser.add_argument("--no-floor", action="store_true", help="leave the floor out")
    args = parser.parse_args()
    from localcluster import temporary_cluster

    rows: list[tuple[str, str]] = []
    stopped = None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="vod-bench-") as tmp,
            temporary_cluster(Path(tmp) / "cluster", name="vod-bench", real_node=False) as cluster,
        ):
            run(cluster, Path(tmp), args.budget_seconds, args.count, args.idle_seconds, rows)
        if not args.no_floor:
            with (
                tempfile.TemporaryDirectory(prefix="vod-floor-") as tmp,
                temporary_cluster(Path(tmp) / "c", name="vod-floor", real_node=False) as cluster,
            ):
                took = floor(cluster, args.budget_seconds, args.count, rows)
            ours = next(v for k, v in rows if k.startswith("apply -> all Ready"))
            rows.append(("operator / floor", f"{float(ours.split()[0]) / took:.2f}x"))
    except Exception as exc:  # whatever stopped it, the table shows what was measured
        if not isinstance(exc, TimeoutError | subprocess.SubprocessError):
            traceback.print_exc()
        stopped = f"{type(exc).__name__}: {(str(exc).strip() or '-').splitlines()[0][:160]}"
        rows.append(("stopped early (what was measured before is above)", stopped))
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measurement'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    print(json.dumps(dict(rows)), file=sys.stderr)
    return 0 if stopped is None else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
