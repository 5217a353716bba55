"""Operator settings, read once from VOD_OPERATOR_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vod_operator.monitoring import DEFAULT_RUNBOOK_BASE_URL


@dataclass(frozen=True)
class Options:
    """Tunables of the operator process (the CLI sets them through the environment)."""

    #: Platforms reconciled concurrently (each pass runs in a worker thread).
    workers: int = 4
    #: Read-only safety-net pass over every platform, in seconds.
    resync_seconds: float = 600.0
    #: How often discovery is re-checked for monitoring.coreos.com/v1, in seconds.
    monitoring_probe_seconds: float = 60.0
    #: Longest retry delay after a failed reconcile, in seconds.
    max_backoff_seconds: float = 300.0
    #: Server-side watch timeout; kopf reconnects after it (no hung watches).
    watch_timeout_seconds: int = 300
    #: Where the platforms' alerts link their runbooks (monitoring/runbooks/ of a repository).
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL

    #: Port of the operator's own /metrics (Prometheus text format); 0 turns it off.
    metrics_port: int = 8080
    #: Address the metrics server listens on.
    metrics_bind_address: str = "0.0.0.0"

    def __post_init__(self) -> None:
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(
                f"VOD_OPERATOR_METRICS_PORT must be 0 (off) to 65535, not {self.metrics_port}"
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
        )
