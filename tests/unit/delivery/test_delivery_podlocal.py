"""The local stand-in for a rendered pod: environment, volumes, and path rewriting."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from vod_delivery.podlocal import LocalMount, local_pod, rewrite_path

pytestmark = pytest.mark.unit


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def deployment(**container: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "stream",
        "command": ["vod-stream", "serve"],
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "volumeMounts": [
            {"name": "media", "mountPath": "/media"},
            {"name": "signing", "mountPath": "/etc/vod/signing", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    base.update(container)
    return {
        "metadata": {"name": "demo-stream"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "sidecar"}, base],
                    "volumes": [
                        {"name": "media", "persistentVolumeClaim": {"claimName": "videos"}},
                        {"name": "signing", "secret": {"secretName": "sig", "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                }
            }
        },
    }


CONFIGMAPS = {
    "cfg": {
        "data": {
            "VOD_PORT": "8080",
            "VOD_MEDIA_ROOT": "/media",
            "VOD_SIGNING_KEYS_DIR": "/etc/vod/signing",
            "VOD_UPLOAD_DIR": "/media/uploads",
            "VOD_SIGNED_URLS": "true",
        }
    }
}
SECRETS = {"sig": {"data": {"k1": b64("secret-one"), "k2": b64("secret-two")}}}


def test_env_is_envfrom_then_env_with_env_winning(tmp_path: Path) -> None:
    dep = deployment(env=[{"name": "VOD_PORT", "value": "9000"}, {"name": "EXTRA", "value": "x"}])
    pod = local_pod(dep, CONFIGMAPS, SECRETS, tmp_path, container_name="stream")
    assert pod.env["VOD_PORT"] == "9000"
    assert pod.env["EXTRA"] == "x"
    assert pod.env["VOD_SIGNED_URLS"] == "true"
    assert pod.command == ["vod-stream", "serve"]


def test_env_value_from_secret_and_configmap_keys(tmp_path: Path) -> None:
    dep = deployment(
        env=[
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "sig", "key": "k2"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "VOD_PORT"}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]
    )
    pod = local_pod(dep, CONFIGMAPS, SECRETS, tmp_path, container_name="stream")
    assert (pod.env["A"], pod.env["B"]) == ("secret-two", "8080")
    assert "C" not in pod.env
    assert any(note.startswith("C:") for note in pod.notes)


def test_secret_volume_becomes_files_with_its_mode(tmp_path: Path) -> None:
    pod = local_pod(deployment(), CONFIGMAPS, SECRETS, tmp_path, container_name="stream")
    files = {f.path: (f.data, f.mode) for f in pod.files}
    assert files == {
        tmp_path / "signing" / "k1": (b"secret-one", 0o440),
        tmp_path / "signing" / "k2": (b"secret-two", 0o440),
    }


def test_secret_items_select_and_rename_keys(tmp_path: Path) -> None:
    dep = deployment()
    volume = dep["spec"]["template"]["spec"]["volumes"][1]
    volume["secret"]["items"] = [{"key": "k2", "path": "active"}]
    pod = local_pod(dep, CONFIGMAPS, SECRETS, tmp_path, container_name="stream")
    assert [(f.path.name, f.data) for f in pod.files] == [("active", b"secret-two")]


def test_env_pointing_into_mounts_is_rewritten(tmp_path: Path) -> None:
    media = tmp_path / "my-media"
    pod = local_pod(
        deployment(),
        CONFIGMAPS,
        SECRETS,
        tmp_path / "vols",
        container_name="stream",
        pvc_dirs={"videos": media},
    )
    assert pod.env["VOD_MEDIA_ROOT"] == str(media)
    assert pod.env["VOD_UPLOAD_DIR"] == str(media / "uploads")
    assert pod.env["VOD_SIGNING_KEYS_DIR"] == str(tmp_path / "vols" / "signing")
    assert pod.rewritten["VOD_MEDIA_ROOT"] == ("/media", str(media))
    assert "VOD_PORT" not in pod.rewritten
    sources = {m.mount_path: m.source for m in pod.mounts}
    assert sources == {
        "/media": "persistentVolumeClaim/videos",
        "/etc/vod/signing": "secret/sig",
        "/tmp": "emptyDir",
    }


def test_rewrite_respects_path_boundaries_and_longest_mount() -> None:
    mounts = [
        LocalMount("a", "/etc/vod", Path("/l/a"), "emptyDir"),
        LocalMount("b", "/etc/vod/signing/", Path("/l/b"), "emptyDir"),
    ]
    assert rewrite_path("/etc/vod/signing/k", mounts) == "/l/b/k"
    assert rewrite_path("/etc/vod/other", mounts) == "/l/a/other"
    assert rewrite_path("/etc/vodka", mounts) is None
    assert rewrite_path("relative/etc/vod", mounts) is None


def test_unknown_container_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="nope"):
        local_pod(deployment(), CONFIGMAPS, SECRETS, tmp_path, container_name="nope")


def test_program_defaults_into_mounts_are_made_local(tmp_path: Path) -> None:
    pod = local_pod(
        deployment(),
        CONFIGMAPS,
        SECRETS,
        tmp_path,
        container_name="stream",
        program_defaults={"VOD_METRICS_DIR": "/tmp/m", "VOD_PORT": "1", "VOD_OTHER": "/srv/x"},
    )
    assert pod.env["VOD_METRICS_DIR"] == str(tmp_path / "tmp" / "m")
    assert pod.env["VOD_PORT"] == "8080"  # rendered values win over defaults
    assert "VOD_OTHER" not in pod.env  # defaults outside every mount stay the program's business
