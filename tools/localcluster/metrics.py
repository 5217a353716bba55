"""Count the API server's write requests from its own /metrics (proves "no writes at rest")."""

from __future__ import annotations

import subprocess
from collections.abc import Collection
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

#: Write verbs as apiserver_request_total labels them. APPLY is a server-side-apply PATCH.
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
#: Resources only the cluster itself writes while idle (API server identity and leader-election
#: leases, kubelet/kwok node leases and node status): left out by default, so that "zero writes at
#: rest" is about the clients under test. Pass `ignore_resources=()` to count everything.
BACKGROUND_RESOURCES = frozenset({"leases", "nodes"})


def count_writes(
    metrics_text: str, ignore_resources: Collection[str] = BACKGROUND_RESOURCES
) -> int:
    """Sum of apiserver_request_total over write verbs, without dry-run requests."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "apiserver_request_total"
                and labels.get("verb") in WRITE_VERBS
                and not labels.get("dry_run")
                and labels.get("resource") not in ignore_resources
            ):
                total += sample.value
    return int(total)


def scrape_metrics(kubeconfig: Path) -> str:
    """`kubectl get --raw /metrics` (any kubeconfig: client certs, tokens, exec plugins)."""
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def write_request_count(
    kubeconfig: Path | str, ignore_resources: Collection[str] = BACKGROUND_RESOURCES
) -> int:
    """How many write requests (POST/PUT/PATCH/APPLY/DELETE/DELETECOLLECTION) the API server served.

    Take it twice and subtract: the difference is the writes made in between."""
    return count_writes(scrape_metrics(Path(kubeconfig)), ignore_resources)
