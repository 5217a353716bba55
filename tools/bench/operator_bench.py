"""Operator benchmark on a fresh local control plane (make bench-operator).

Measures, and prints as a table:
  1. seconds from `kubectl apply` to Ready for one VideoPlatform;
  2. seconds from `kubectl apply` of 50 VideoPlatforms (one multi-document apply) to all Ready;
  3. write requests to the API server during one idle minute with 50 present (target 0), both
     for everything and for the resources the operator touches;
  4. the operator's resident memory (RSS) with 50 present.
Starts its own control plane through `localcluster`, runs the operator as a subprocess, cleans
up, and is bounded in time (every wait has a timeout; the whole run is capped).
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vod_operator.kube import WRITTEN_RESOURCES

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"  # both CRDs: the operator watches VideoAssets too
NAMESPACE = "bench"
RESYNC_SECONDS = 20
#: The resources the operator writes (children, its own status, Events).
OPERATOR_RESOURCES = WRITTEN_RESOURCES


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
    def operator(self) -> Iterator[subprocess.Popen[bytes]]:
        log = (self.workdir / "operator.log").open("wb")
        # A resync every RESYNC_SECONDS makes the idle minute include full read-only passes.
        # No metrics server: its fixed default port could be taken on this host.
        env = dict(
            self.cluster.env,
            PYTHONUNBUFFERED="1",
            VOD_OPERATOR_RESYNC_SECONDS=str(RESYNC_SECONDS),
            VOD_OPERATOR_METRICS_PORT="0",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "vod_operator", "--liveness", "http://127.0.0.1:18081/healthz"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: _http_ok("http://127.0.0.1:18081/healthz"), self.remaining(60))
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def apply_to_ready(self, names: list[str], timeout: float) -> float:
        """Seconds from the apply to every one of `names` Ready, watched (one watch, not a
        poll that would load the API server), progress printed every 10 s; TimeoutError naming
        how many were Ready when the time ran out. (`kubectl wait` is no use at this scale: its
        --timeout is per object, so waiting on 1000 can outlast any budget.)"""
        ready_status = '{.status.conditions[?(@.type=="Ready")].status}'
        watch = subprocess.Popen(
            ["kubectl", "get", "vp", "-n", NAMESPACE, "--watch", "-o",
             f'jsonpath={{.metadata.name}}{{" "}}{ready_status}{{"\\n"}}'],
            env=self.cluster.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        ready: dict[str, bool] = {}

        def follow() -> None:
            assert watch.stdout is not None
            for line in watch.stdout:
                name, _, status = line.strip().partition(" ")
                ready[name] = status == "True"

        threading.Thread(target=follow, daemon=True).start()
        wanted = set(names)
        try:
            started = time.monotonic()
            self.kubectl("apply", "-f", "-", input="---\n".join(platform(n) for n in names))
            deadline = started + self.remaining(timeout)
            shown = started
            while (done := sum(ready.get(n, False) for n in wanted)) < len(wanted):
                now = time.monotonic()
                if now > deadline:
                    raise TimeoutError(f"{done} of {len(wanted)} Ready after {now - started:.0f} s")
                if len(wanted) > 1 and now - shown >= 10:
                    print(f"  {done}/{len(wanted)} Ready after {now - started:.0f} s", flush=True)
                    shown = now
                time.sleep(0.1)
            return time.monotonic() - started
        finally:
            watch.kill()
            watch.wait()

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
    with bench.operator() as proc:
        one = bench.apply_to_ready(["single"], timeout=120)
        rows.append(("apply -> Ready, 1 VideoPlatform", f"{one:.1f} s"))
        names = [f"vp-{i:02d}" for i in range(count)]
        many = bench.apply_to_ready(names, timeout=600)
        rows.append((f"apply -> all Ready, {count} VideoPlatforms at once", f"{many:.1f} s"))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--budget-seconds", type=float, default=900)
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
    except (TimeoutError, subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
        stopped = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"
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
