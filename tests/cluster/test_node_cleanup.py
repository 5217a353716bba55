"""A real node's start and stop leave the host as it was: a second cluster with its own real node
(beside the session's) runs a pod, stops, and the host shows no process, mount, network
namespace, interface, route, cgroup, iptables chain, changed sysctl or file of it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import cluster, hoststate, images, realnode
from localcluster.node import NODE_NAME, NodeLayout

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]

#: Sysctls the kubelet writes at start (vm.overcommit_memory=1, kernel.panic=10, ...): set to
#: other values first, so the test sees them written and then put back.
PROBED = {"kernel.panic": "0", "kernel.panic_on_oops": "0", "vm.overcommit_memory": "0"}


@pytest.fixture
def probed_sysctls() -> Iterator[None]:
    original = hoststate.read_sysctls()
    for name, value in PROBED.items():
        Path("/proc/sys", name.replace(".", "/")).write_text(value)
    yield
    for name in PROBED:
        Path("/proc/sys", name.replace(".", "/")).write_text(original[name])


@pytest.fixture
def short_folder() -> Iterator[Path]:
    """A cluster folder right under /tmp: pytest's own (`/tmp/pytest-of-root/pytest-NNN/<test
    name>0`) leaves the kubelet's sockets too little of a unix socket path's 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_real_node_leaves_nothing_behind(short_folder: Path, probed_sysctls: None) -> None:
    before = hoststate.snapshot()
    root = short_folder / "cleanup"
    pause = images.ensure_pause()
    up = cluster.start(
        root, "cleanup", die_with_parent=True, node_images=(images.PAUSE_IMAGE, [pause.archive])
    )
    net = realnode.load_net(root)
    assert net is not None
    env = {"KUBECONFIG": str(up.kubeconfig), "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def kubectl(*args: str, data: str | None = None) -> str:
        return subprocess.run(
            ["kubectl", *args], input=data, env=env, capture_output=True, text=True,
            timeout=120, check=True,
        ).stdout  # fmt: skip

    try:
        nodes = kubectl("get", "nodes", "-o", "wide")
        print(nodes)
        assert NODE_NAME in nodes
        container = {
            "name": "pause",
            "image": images.PAUSE_IMAGE,
            "imagePullPolicy": "Never",
            "volumeMounts": [{"name": "scratch", "mountPath": "/s"}],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {"containers": [container], "volumes": [{"name": "scratch", "emptyDir": {}}]},
        }
        kubectl("apply", "-f", "-", data=json.dumps(pod))
        kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s")
        running = realnode.leftovers(before, root, [net])
        # while it runs, the checks do see the node: they can fail
        assert any(item.startswith("mount ") for item in running), running
        assert any(item.startswith("cgroup ") for item in running), running
        assert any(item.startswith("process ") for item in running), running
        shims = [
            pid
            for pid in hoststate.node_pids(root, NodeLayout(root).sockets)
            if b"containerd-shim" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert shims, "the pod's shim is counted as the node's"
        assert f"network namespace {net.netns}" in running
        assert any(item.startswith("sysctl kernel.panic=") for item in running), running
    finally:
        cluster.stop(root)
    time.sleep(0.5)
    left = realnode.leftovers(before, root, [net])
    assert left == [], left
    assert hoststate.read_sysctls()["kernel.panic"] == PROBED["kernel.panic"]
