"""The pause image, made without any engine, imports into a real containerd (a private one)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from localcluster import imageload, images, ociarchive
from localcluster.versions import KUBERNETES_VERSION
from tests.component.containerd import private_containerd

pytestmark = pytest.mark.component


def _pause_binary(archive: Path, into: Path) -> Path:
    info = ociarchive.read_archive(archive)
    (layer,) = info.layer_digests
    with tarfile.open(archive) as outer:
        blob = outer.extractfile(ociarchive.blob_path(layer))
        assert blob is not None
        with tarfile.open(fileobj=io.BytesIO(blob.read())) as inner:
            member = inner.getmember("pause")
            data = inner.extractfile(member)
            assert data is not None
            target = into / "pause"
            target.write_bytes(data.read())
            target.chmod(member.mode)
    return target


def test_pause_image_is_a_static_pause(tmp_path: Path) -> None:
    image = images.ensure_pause()
    assert image.ref == images.PAUSE_IMAGE
    assert ociarchive.verify_archive(image.archive) == []
    info = ociarchive.read_archive(image.archive)
    assert info.config["config"] == {"Entrypoint": ["/pause"], "User": "65535:65535"}
    assert image.size < 2_000_000
    binary = _pause_binary(image.archive, tmp_path)
    # Static: it runs anywhere, `-v` prints the version compiled in and exits.
    out = subprocess.run([str(binary), "-v"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith(KUBERNETES_VERSION)
    elf = subprocess.run(["file", str(binary)], capture_output=True, text=True, check=False)
    if elf.returncode == 0:
        assert "statically linked" in elf.stdout
    again = images.ensure_pause()
    assert (again.action, again.archive) == ("reused", image.archive)


def test_pause_image_imports_into_containerd() -> None:
    image = images.ensure_pause()
    info = ociarchive.read_archive(image.archive)
    with private_containerd() as socket:
        began = time.monotonic()
        first = imageload.load(image.archive, socket)
        took = time.monotonic() - began
        listed = imageload.parse_image_list(
            imageload.ctr(socket, imageload.K8S_NAMESPACE, "images", "ls")
        )
        # containerd keeps the archive's own manifest: the digest is known before importing.
        assert listed == {images.PAUSE_IMAGE: info.manifest_digest}
        assert imageload.config_digest(socket, images.PAUSE_IMAGE) == info.config_digest
        second = imageload.load(image.archive, socket)
    assert (first.action, second.action) == ("imported", "present")
    assert first.ref == images.PAUSE_IMAGE
    assert took < 30
