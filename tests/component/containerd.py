"""A private containerd for tests: its own root, state and sockets in a temporary folder.

The CRI plugin (and the snapshotters this machine has no use for) are disabled: importing and
listing images needs neither, and nothing outside the folder is touched (containerd's `opt`
plugin would otherwise create /opt/containerd).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localcluster.processes import spawn, stop_all

START_SECONDS = 30


def config(folder: Path) -> str:
    return f"""\
version = 2
root = "{folder}/root"
state = "{folder}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{folder}/containerd.sock"

[ttrpc]
  address = "{folder}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/opt"
"""


def mounts_below(folder: Path) -> list[str]:
    prefix = str(folder)
    return [
        point
        for point in (
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        )
        if point == prefix or point.startswith(prefix + "/")
    ]


@contextmanager
def private_containerd() -> Iterator[Path]:
    """Start containerd in a fresh short-named folder under /tmp (unix socket paths are short);
    yield its grpc socket; stop it and remove the folder."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        raise RuntimeError(
            "a private containerd needs containerd and ctr: apt-get install containerd"
        )
    folder = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    socket = folder / "containerd.sock"
    (folder / "config.toml").write_text(config(folder))
    proc = spawn(
        "containerd",
        ["containerd", "--config", str(folder / "config.toml")],
        folder,
        folder,
        die_with_parent=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            ready = subprocess.run(
                ["ctr", "--address", str(socket), "version"], capture_output=True, check=False
            )
            if ready.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (folder / "containerd.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"containerd did not start:\n{log}")
            time.sleep(0.1)
        yield socket
    finally:
        stop_all(folder, ["containerd"], marker=str(folder), grace=15)
        for point in sorted(mounts_below(folder), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)
