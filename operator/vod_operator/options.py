"""Operator settings, read once from VOD_OPERATOR_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vod_operator.monitoring import DEFAULT_RUNBOOK_BASE_URL
from vod_operator.naming import DEFAULT_PACKAGING_IMAGE

#: Where a pod finds its own namespace (the service account's mount).
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE | FALSE:
        return lowered in TRUE
    raise ValueError(f"{name} must be true or false, not {value!r}")


def in_cluster(env: dict[str, str]) -> bool:
    """Whether this process runs in a pod (the kubelet sets KUBERNETES_SERVICE_HOST)."""
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


def own_namespace(env: dict[str, str], mounted: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """POD_NAMESPACE (downward API), else the service account's namespace, else default."""
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        return mounted.read_text().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True)
class Options:
    """Tunables of the operator process (the CLI sets them through the environment)."""

    #: Platforms reconciled concurrently (each pass runs in a worker thread).
    workers: int = 4
    #: Read-only safety-net pass over every platform, in seconds.
    resync_seconds: float = 600.0
    #: How often discovery is re-checked for monitoring.coreos.com/v1, KEDA (keda.sh/v1alpha1)
    #: and the custom/external metrics APIs, in seconds.
    monitoring_probe_seconds: float = 60.0
    #: Longest retry delay after a failed reconcile, in seconds.
    max_backoff_seconds: float = 300.0
    #: Server-side watch timeout; kopf reconnects after it (no hung watches).
    watch_timeout_seconds: int = 300
    #: Where the platforms' alerts link their runbooks (monitoring/runbooks/ of a repository).
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    #: The image the VideoAsset Jobs run (`vod-stream package`/`unpublish`: the streaming
    #: image plus ffmpeg/ffprobe); default: the one released with this operator.
    packaging_image: str = DEFAULT_PACKAGING_IMAGE

    #: Port of the operator's own /metrics (Prometheus text format); 0 turns it off.
    metrics_port: int = 8080
    #: Address the metrics server listens on.
    metrics_bind_address: str = "0.0.0.0"

    #: Only the holder of a coordination.k8s.io Lease reconciles and writes (replicas > 1).
    #: Default: on in a pod, off for an operator run on a workstation against a cluster.
    leader_election: bool = False
    #: The Lease: its name, and its namespace (default: the operator's own).
    leader_election_name: str = "vod-operator"
    leader_election_namespace: str = "default"
    #: controller-runtime's defaults: a claim lasts 15 s, the holder stops writing when it
    #: could not renew for 10 s, and every candidate tries every 2 s.
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(
                f"VOD_OPERATOR_METRICS_PORT must be 0 (off) to 65535, not {self.metrics_port}"
            )
        durations = (
            self.lease_duration_seconds,
            self.renew_deadline_seconds,
            self.retry_period_seconds,
        )
        if not durations[0] > durations[1] > durations[2] > 0:
            raise ValueError(
                "VOD_OPERATOR_LEASE_DURATION_SECONDS > VOD_OPERATOR_RENEW_DEADLINE_SECONDS > "
                f"VOD_OPERATOR_RETRY_PERIOD_SECONDS > 0 is required, not {durations}"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Options:
        env = dict(os.environ if environ is None else environ)
        defaults = cls()

        def read(name: str, default: float) -> float:
            return float(env.get(f"VOD_OPERATOR_{name}", default))

        return cls(
            workers=int(read("WORKERS", defaults.workers)),
            resync_seconds=read("RESYNC_SECONDS", defaults.resync_seconds),
            monitoring_probe_seconds=read(
                "MONITORING_PROBE_SECONDS", defaults.monitoring_probe_seconds
            ),
            max_backoff_seconds=read("MAX_BACKOFF_SECONDS", defaults.max_backoff_seconds),
            watch_timeout_seconds=int(
                read("WATCH_TIMEOUT_SECONDS", defaults.watch_timeout_seconds)
            ),
            metrics_port=int(env.get("VOD_OPERATOR_METRICS_PORT", defaults.metrics_port)),
            metrics_bind_address=env.get(
                "VOD_OPERATOR_METRICS_BIND_ADDRESS", defaults.metrics_bind_address
            ),
            runbook_base_url=env.get("VOD_OPERATOR_RUNBOOK_BASE_URL") or defaults.runbook_base_url,
            packaging_image=env.get("VOD_OPERATOR_PACKAGING_IMAGE") or defaults.packaging_image,
            leader_election=parse_bool(
                "VOD_OPERATOR_LEADER_ELECTION",
                env.get("VOD_OPERATOR_LEADER_ELECTION") or str(in_cluster(env)),
            ),
            leader_election_name=env.get("VOD_OPERATOR_LEADER_ELECTION_NAME")
            or defaults.leader_election_name,
            leader_election_namespace=env.get("VOD_OPERATOR_LEADER_ELECTION_NAMESPACE")
            or own_namespace(env),
            lease_duration_seconds=read("LEASE_DURATION_SECONDS", defaults.lease_duration_seconds),
            renew_deadline_seconds=read("RENEW_DEADLINE_SECONDS", defaults.renew_deadline_seconds),
            retry_period_seconds=read("RETRY_PERIOD_SECONDS", defaults.retry_period_seconds),
        )
