"""Pure helpers behind a platform's ServiceMonitor and PrometheusRule: Prometheus durations,
the time scale (`for` durations and threshold windows), the SLO's error budgets and burn-rate
windows, runbook links.

The templates (servicemonitor.yaml.j2, prometheusrule.yaml.j2) lay the objects out; every
number they print comes from `context()`, so the rules are the same for every platform apart
from its labels and its `spec.monitoring`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

#: Where the runbooks live; an operator setting (VOD_OPERATOR_RUNBOOK_BASE_URL) can move it.
DEFAULT_RUNBOOK_BASE_URL = (
    "https://github.com/vod-operator/vod-operator/blob/main/monitoring/runbooks/"
)
#: Longest scrape timeout; shorter intervals get a timeout equal to the interval (Prometheus
#: refuses a timeout above the interval).
MAX_SCRAPE_TIMEOUT_SECONDS = 10

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate condition (Google SRE workbook, chapter 5, table 5-8)."""

    long: str
    short: str
    factor: float
    severity: str
    #: The alert's `for` before spec.monitoring.alerts.timeScale.
    for_: str


#: 2% of a 30-day budget in 1 hour and 5% in 6 hours page; 10% in 3 days warns.
BURN_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "critical", "2m"),
    BurnWindow("6h", "30m", 6, "critical", "15m"),
    BurnWindow("1d", "2h", 3, "warning", "1h"),
    BurnWindow("3d", "6h", 1, "warning", "3h"),
)
#: Every window a ratio is recorded for, shortest first.
RATIO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
#: A VideoAsset still Processing this long after its Job's deadline is stuck: by then the Job
#: has failed and the asset should be Failed.
STUCK_MARGIN_SECONDS = 900


def parse_duration(text: str) -> int:
    """Whole seconds of a Prometheus/Go duration made of d, h, m and s parts ("1m30s")."""
    match = _DURATION.match(text)
    if not text or not match:
        raise ValueError(f"not a duration of d/h/m/s parts: {text!r}")
    return sum(int(n) * unit for n, (_, unit) in zip(match.groups(), _UNITS, strict=True) if n)


def format_duration(seconds: int) -> str:
    """The shortest Prometheus duration of whole `seconds` (90 -> "1m30s", 0 -> "0s")."""
    if seconds <= 0:
        return "0s"
    parts = []
    for suffix, unit in _UNITS:
        count, seconds = divmod(seconds, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


def scaled(base: str, scale: float) -> str:
    """`base` multiplied by `scale`, rounded to whole seconds, never below 1s."""
    return format_duration(max(1, round(parse_duration(base) * scale)))


#: A rate window holds at least this many scrapes, however small spec.monitoring.alerts.timeScale.
MIN_SCRAPES_PER_WINDOW = 4


def rate_window(base: str, scale: float, scrape_interval: str) -> str:
    """The rate window of a threshold alert: `base` scaled like the `for` durations, never
    shorter than MIN_SCRAPES_PER_WINDOW scrape intervals (rate() needs two samples, and a
    window of a few keeps one missed scrape from hiding a spike)."""
    floor = MIN_SCRAPES_PER_WINDOW * parse_duration(scrape_interval)
    return format_duration(max(floor, round(parse_duration(base) * scale)))


def scrape_timeout(interval: str) -> str:
    """The ServiceMonitor's scrapeTimeout: the interval, at most MAX_SCRAPE_TIMEOUT_SECONDS."""
    return format_duration(min(parse_duration(interval), MAX_SCRAPE_TIMEOUT_SECONDS))


def number(value: float) -> str:
    """A PromQL literal without float noise (0.005, 14.4, 1e-05)."""
    return format(round(float(value), 9), "g")


def budget(target_percent: float) -> str:
    """The error budget of a target as a ratio literal (99.5 -> "0.005")."""
    return number((100 - float(target_percent)) / 100)


def bucket_label(seconds: float) -> str:
    """The `le` label value the streaming pods expose for a bucket bound (1 -> "1.0"): both
    sides format bounds as Python's float repr does."""
    return repr(float(seconds))


def days_of_budget(factor: float, period_days: int = 30) -> str:
    """How many days a whole period's error budget lasts at `factor` times its rate."""
    return format(round(period_days / float(factor), 1), "g")


def selector(namespace: str, name: str, *extra: str) -> str:
    """A PromQL label selector of one platform's series (the contract's namespace and platform
    labels), with `extra` matchers such as 'route="media"'."""
    return "{" + ", ".join((f'namespace="{namespace}"', f'platform="{name}"', *extra)) + "}"


def runbook_url(base: str, alert: str) -> str:
    """The runbook of an alert: monitoring/runbooks/<alert>.md under `base`."""
    return f"{base.rstrip('/')}/{alert}.md"


def context(
    name: str, namespace: str, spec: Mapping[str, Any], runbook_base_url: str
) -> dict[str, Any]:
    """What the monitoring templates print, from the platform's (defaulted) spec."""
    monitoring = spec["monitoring"]
    deadline = int(spec["transcoding"].get("activeDeadlineSeconds", 21600))
    scale = float(monitoring["alerts"]["timeScale"])
    slo = monitoring["slo"]
    latency = slo["latency"]
    return {
        "scrape_interval": monitoring["scrapeInterval"],
        "scrape_timeout": scrape_timeout(monitoring["scrapeInterval"]),
        "select": partial(selector, namespace, name),
        "alert_for": partial(scaled, scale=scale),
        "window": partial(rate_window, scale=scale, scrape_interval=monitoring["scrapeInterval"]),
        "runbook": partial(runbook_url, runbook_base_url),
        "burn_windows": BURN_WINDOWS,
        "ratio_windows": RATIO_WINDOWS,
        "availability_target": number(slo["availability"]["targetPercent"]),
        "availability_budget": budget(slo["availability"]["targetPercent"]),
        "latency_target": number(latency["targetPercent"]),
        "latency_budget": budget(latency["targetPercent"]),
        "latency_le": bucket_label(latency["thresholdSeconds"]),
        "latency_threshold": number(latency["thresholdSeconds"]),
        "processing_stuck_seconds": deadline + STUCK_MARGIN_SECONDS,
        "number": number,
        "days_of_budget": days_of_budget,
    }
