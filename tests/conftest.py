"""Session fixtures shared by every tier: `kube_cluster`, the real control plane.

The session starts its own private control plane (never the user's kubectl context) unless
VOD_TEST_EXISTING_CLUSTER=1, in which case $KUBECONFIG is used as is (e.g. kind in `make e2e-kind`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import KubeCluster, temporary_cluster


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A reachable cluster: `.kubeconfig`, `.env`, `.kubectl(...)`, `.server`."""
    if os.environ.get("VOD_TEST_EXISTING_CLUSTER") == "1":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            raise pytest.UsageError("VOD_TEST_EXISTING_CLUSTER=1 needs KUBECONFIG")
        yield KubeCluster(kubeconfig=Path(kubeconfig))
        return
    with temporary_cluster(tmp_path_factory.mktemp("kube"), name="vod-test") as cluster:
        yield cluster
