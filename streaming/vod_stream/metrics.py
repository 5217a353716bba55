"""The Python side's Prometheus metrics. The data plane serves /metrics: it fetches this
exposition and merges its own series into it (same names and labels, samples summed)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value store when imported: files under the multiprocess folder
# only when the variable was already set then (the Python side is one process: usually not).
_MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))

REQUESTS = Counter(
    "vod_http_requests",
    "HTTP requests answered, by route, method and status class.",
    ["route", "method", "status_class"],
)
RESPONSE_BYTES = Counter(
    "vod_http_response_body_bytes", "Response body bytes sent, by route.", ["route"]
)
RANGE_REQUESTS = Counter(
    "vod_range_requests",
    "GET requests carrying a Range header, by how they were answered "
    "(single, suffix, multi, unsatisfiable, ignored).",
    ["kind"],
)
DURATION = Histogram(
    "vod_http_request_duration_seconds",
    "Time from request headers to the last body byte handed to the kernel.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
#: The route whose requests the in-flight gauge leaves out: the scrape reading it.
NOT_IN_FLIGHT = "metrics"
IN_FLIGHT = Gauge(
    "vod_http_requests_in_flight",
    "Requests being handled right now (the scrape reading it is not counted).",
    multiprocess_mode="livesum",
)
SEND_TIMEOUTS = Counter(
    "vod_send_timeouts",
    "Responses cut because the client read nothing for VOD_SEND_TIMEOUT_SECONDS.",
)
UPLOAD_BYTES = Counter("vod_upload_bytes", "Bytes received in uploads that were stored.")
#: Why an upload stored nothing (the `reason` label).
UPLOAD_FAILURE_REASONS = (
    "too_large", "disconnected", "timeout", "no_space", "checksum", "origin", "error",
)  # fmt: skip
UPLOAD_FAILURES = Counter(
    "vod_upload_failures",
    "Uploads that did not store a file, by reason (" + ", ".join(UPLOAD_FAILURE_REASONS) + ").",
    ["reason"],
)
# Written at zero from the start: increase() sees a first failure only after an earlier sample
# (the failing-uploads alert fires on the first one).
for _reason in UPLOAD_FAILURE_REASONS:
    UPLOAD_FAILURES.labels(_reason)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH"})


def method_label(method: str) -> str:
    """The ``method`` label: any other method (clients choose it) is ``other``, so the
    number of series stays bounded."""
    return method if method in METHODS else "other"


_children: dict[tuple[object, ...], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoised: the lookup is a hot-path cost."""
    key = (metric, *labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def exposition() -> tuple[bytes, str]:
    """The text exposition of the Python side's metrics, and its content type."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and _MULTIPROCESS:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (its counters stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)
