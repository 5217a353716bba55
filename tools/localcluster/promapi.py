"""A small client of Prometheus' HTTP API (`/api/v1/...`), stdlib only.

What the cluster tests and `python -m localcluster monitoring` need: instant queries, any API
path's `data`, the active targets, readiness, and polling until a check holds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """Prometheus answered an error (status, errorType and error in the message)."""


def decode(body: bytes) -> Any:
    """The `data` of an API answer; PrometheusError for `status: error`."""
    answer = json.loads(body)
    if answer.get("status") != "success":
        raise PrometheusError(f"{answer.get('errorType')}: {answer.get('error')}")
    return answer.get("data")


@dataclass(frozen=True)
class Prometheus:
    """Prometheus at `url` (e.g. `http://10.244.1.7:9090`, a pod IP the host routes to)."""

    url: str
    timeout: float = 10.0

    def _get(self, path: str, params: dict[str, Any]) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        address = f"{self.url.rstrip('/')}/{path.lstrip('/')}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as err:  # 4xx/5xx carry the same JSON error shape
            body = err.read()
            try:
                decode(body)
            except (PrometheusError, ValueError) as detail:
                raise PrometheusError(f"GET {address}: {err.code} {detail}") from err
            raise

    def api(self, path: str, **params: Any) -> Any:
        """The `data` of `/api/v1/<path>` (e.g. "targets", "rules", "alerts")."""
        return decode(self._get(f"api/v1/{path.lstrip('/')}", params))

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The `data.result` of an instant query (at `at`, default now):
        [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.api("query", query=expr, time=at)
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Active targets (optionally of one namespace, by their `namespace` label)."""
        active: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        if namespace is None:
            return active
        return [t for t in active if t.get("labels", {}).get("namespace") == namespace]

    def ready(self) -> bool:
        """`/-/ready` answers 200 (the TSDB is open and the first config loaded)."""
        try:
            self._get("-/ready", {})
        except (OSError, PrometheusError):
            return False
        return True

    def wait_for(self, check: Callable[[], T], timeout: float = 60.0, interval: float = 1.0) -> T:
        """Poll `check` until it returns a truthy value (returned); on timeout raise
        AssertionError with the last value or error."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = check()
            except (AssertionError, OSError, PrometheusError, KeyError, IndexError) as err:
                last = err
            else:
                if value:
                    return value
                last = value
            if time.monotonic() >= deadline:
                raise AssertionError(f"not met within {timeout:.0f} s; last: {last!r}")
            time.sleep(interval)
