"""The in-cluster S3 server's image (base + `weed`, written without an engine) runs the dev
manifest's own start script: as uid 65532, the bucket is created, readiness appears, and
SIGTERM to the script stops weed. The image's root filesystem is unpacked and run with chroot in
private mount and network namespaces (needs root, as the node does)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from localcluster import images, ociarchive

pytestmark = [pytest.mark.component, pytest.mark.images, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifests" / "dev" / "seaweedfs" / "deployment.yaml"


def unpack(archive: Path, rootfs: Path) -> None:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_blob = ociarchive.blob_path(index["manifests"][0]["digest"])
        manifest = json.load(tar.extractfile(manifest_blob))  # type: ignore[arg-type]
        for layer in manifest["layers"]:
            stream = tar.extractfile(ociarchive.blob_path(layer["digest"]))
            with tarfile.open(fileobj=stream, mode="r|") as layer_tar:
                layer_tar.extractall(rootfs, filter="fully_trusted")


@pytest.fixture(scope="module")
def seaweedfs_image() -> images.Image:
    return images.ensure_seaweedfs(images.ensure_base())


def test_the_image_holds_weed_as_an_unprivileged_entrypoint(seaweedfs_image) -> None:
    assert ociarchive.verify_archive(seaweedfs_image.archive) == []
    config = ociarchive.read_archive(seaweedfs_image.archive).config["config"]
    assert config["Entrypoint"] == ["/usr/local/bin/weed"]
    assert config["User"] == "65532:65532"
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == seaweedfs_image.ref


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot and namespaces need root")
def test_the_manifest_script_creates_the_bucket_and_stops_on_sigterm(
    seaweedfs_image, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    unpack(seaweedfs_image.archive, rootfs)
    (rootfs / "etc" / "seaweedfs").mkdir(parents=True)
    (rootfs / "etc" / "seaweedfs" / "access_key_id").write_text("dev-key")
    (rootfs / "etc" / "seaweedfs" / "secret_access_key").write_text("dev-secret")
    shutil.chown(rootfs / "data", 65532, 65532)
    (rootfs / "tmp").chmod(0o1777)
    container = yaml.safe_load(MANIFEST.read_text())["spec"]["template"]["spec"]["containers"][0]
    (rootfs / "start.sh").write_text(container["args"][0])
    inner = (
        f"ip link set lo up && mount --bind /dev {rootfs}/dev && mount -t proc proc {rootfs}/proc"
        f" && exec chroot --userspec=65532:65532 {rootfs} /bin/sh /start.sh"
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BUCKET": "media"}
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(
            ["unshare", "--mount", "--net", "sh", "-c", inner], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 120
        while not (rootfs / "tmp" / "bucket-ready").exists():
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the bucket was not created"
            time.sleep(0.5)
        assert (rootfs / "data" / "filerldb2").is_dir()  # weed wrote its data as uid 65532
        process.send_signal(signal.SIGTERM)  # exec'd: the signal reaches the script itself
        assert process.wait(45) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
