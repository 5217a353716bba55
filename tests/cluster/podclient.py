"""An HTTP client that runs inside the cluster, in a pod of the streaming image, so requests go
through cluster DNS, the Service's ClusterIP and kube-proxy as any in-cluster player's would.

`run_client_pod` starts it with `kubectl`, waits for it to finish and returns its JSON report.
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

from tests.cluster.conftest import Namespace

#: Runs in the pod (python3 of the streaming image, stdlib only). argv: JSON settings.
#: Each request opens a new connection, asks for a Range and checks the bytes against the
#: file's known pattern (byte i is i % 251). Reports counts, failures and a timeline. It stops
#: after `seconds`, or (optional) once it has sent `requests`.
CLIENT = textwrap.dedent(
    """
    import http.client, json, random, sys, threading, time
    cfg = json.loads(sys.argv[1])
    host, port, path = cfg["host"], cfg["port"], cfg["path"]
    size, span, seconds = cfg["size"], cfg["span"], cfg["seconds"]
    stats = {"ok": 0, "failed": 0, "errors": [], "bytes": 0, "timeline": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    def expected(start, end):
        return bytes((i % 251) for i in range(start, end + 1))
    def one(rng):
        start = rng.randrange(0, size - span)
        end = start + span - 1
        conn = http.client.HTTPConnection(host, port, timeout=20)
        try:
            conn.request("GET", path, headers={"Range": f"bytes={start}-{end}"})
            resp = conn.getresponse()
            body = resp.read()
            good = resp.status == 206 and body == expected(start, end)
            error = None if good else f"{resp.status} {len(body)} bytes at {start}"
        except Exception as exc:
            good, error, body = False, f"{type(exc).__name__}: {exc}", b""
        finally:
            conn.close()
        with lock:
            stats["ok" if good else "failed"] += 1
            stats["bytes"] += len(body)
            if error and len(stats["errors"]) < 20:
                stats["errors"].append(error)
    def room():
        with lock:
            return stats["ok"] + stats["failed"] < cfg.get("requests", float("inf"))
    def worker(seed):
        rng = random.Random(seed)
        while time.monotonic() < deadline and room():
            one(rng)
            if cfg.get("pause"):
                time.sleep(cfg["pause"])
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(cfg["threads"])]
    began = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        with lock:
            now = round(time.monotonic() - began)
            stats["timeline"].append([now, stats["ok"], stats["failed"]])
    for t in threads:
        t.join()
    print("RESULT " + json.dumps(stats), flush=True)
    """
)


def pattern(size: int) -> bytes:
    """The bytes of the test file: byte i is i % 251 (so any misplaced range shows)."""
    block = bytes(range(251))
    return (block * (size // 251 + 1))[:size]


def client_pod_manifest(
    name: str, image: str, settings: dict[str, Any], node: str | None = None
) -> dict[str, Any]:
    """The client pod (`node`: on that node, by its hostname label)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "vod-test-client"}},
        "spec": {
            **({"nodeSelector": {"kubernetes.io/hostname": node}} if node else {}),
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10002, "runAsGroup": 10002},
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", CLIENT, json.dumps(settings)],
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                }
            ],
        },
    }


def start_client_pod(
    ns: Namespace, name: str, image: str, settings: dict[str, Any], node: str | None = None
) -> None:
    ns.apply(json.dumps(client_pod_manifest(name, image, settings, node)))


def client_result(ns: Namespace, name: str, timeout: float) -> dict[str, Any]:
    """Wait for the client pod to finish; its report (raises with its log when it failed)."""
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = ns.get("pod", name).get("status", {}).get("phase", "")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    log = ns.kubectl("logs", name, check=False).stdout
    lines = [line for line in log.splitlines() if line.startswith("RESULT ")]
    if phase != "Succeeded" or not lines:
        raise AssertionError(f"client pod {name} ended {phase or 'not at all'}: {log[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def run_client_pod(
    ns: Namespace, name: str, image: str, settings: dict[str, Any], timeout: float = 180
) -> dict[str, Any]:
    start_client_pod(ns, name, image, settings)
    return client_result(ns, name, timeout)
