"""Session fixtures shared by every tier: `kube_cluster`, the real control plane, and
`s3_server`, a real S3-compatible server (SeaweedFS) on 127.0.0.1.

The session starts its own private control plane (never the user's kubectl context) unless
VOD_TEST_EXISTING_CLUSTER=1, in which case $KUBECONFIG is used as is (e.g. kind in `make e2e-kind`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import KubeCluster, temporary_cluster
from localcluster.s3server import S3Server, start_s3_server


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS's S3 gateway for the session: `.endpoint`, `.region`, `.access_key`,
    `.secret_key`, `.make_bucket(name, public_read=False)`, `.write_credentials(dir)`, and the
    admin checks `.list_multipart_uploads(bucket)` and `.list_keys(bucket)`.

    Fails (never skips) when `weed` is not built: `make cluster-build` builds it.
    """
    try:
        server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    except FileNotFoundError as exc:
        pytest.fail(f"the S3 test server is missing: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
