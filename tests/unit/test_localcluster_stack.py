"""The monitoring stack's pure parts: the wrapper module's go.mod edits, images composed on a
base without an engine, the stack's manifests (least privilege, selectors), the API decoder."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from localcluster import images, kubeobjects, monitoring, ociarchive, stackmanifests
from localcluster.cli import main as cli_main
from localcluster.gomod import replace_args, wrapper_edits
from localcluster.promapi import Prometheus, PrometheusError, decode
from localcluster.versions import (
    CONTROL_PLANE_BINARIES,
    MONITORING_BINARIES,
    PROMETHEUS_OPERATOR_VERSION,
    component_of,
)

pytestmark = pytest.mark.unit

# As `go mod edit -json` prints prometheus-operator v0.85.0's go.mod (trimmed), plus a fork and
# an exclude of the kind Prometheus' own go.mod has.
OPERATOR_MOD = {
    "Module": {"Path": "github.com/prometheus-operator/prometheus-operator"},
    "Require": [
        {"Path": "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring",
         "Version": "v0.85.0"},
        {"Path": "github.com/prometheus-operator/prometheus-operator/pkg/client",
         "Version": "v0.85.0"},
        {"Path": "k8s.io/client-go", "Version": "v0.33.3"},
    ],
    "Replace": [
        {"Old": {"Path": "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"},
         "New": {"Path": "./pkg/apis/monitoring"}},
        {"Old": {"Path": "github.com/prometheus-operator/prometheus-operator/pkg/client"},
         "New": {"Path": "./pkg/client"}},
    ],
}  # fmt: skip
FORK_MOD = {
    "Require": [{"Path": "github.com/a/b", "Version": "v1.0.0"}],
    "Replace": [
        {"Old": {"Path": "github.com/a/b"},
         "New": {"Path": "github.com/fork/b", "Version": "v1.0.1"}},
        {"Old": {"Path": "github.com/c/d", "Version": "v0.1.0"},
         "New": {"Path": "github.com/c/d", "Version": "v0.1.2"}},
    ],
    "Exclude": [{"Path": "github.com/e/f", "Version": "v2.0.0"}],
}  # fmt: skip


def test_local_replaces_become_their_published_twins() -> None:
    assert wrapper_edits(OPERATOR_MOD, "v0.85.0") == [
        "-replace=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring="
        "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@v0.85.0",
        "-replace=github.com/prometheus-operator/prometheus-operator/pkg/client="
        "github.com/prometheus-operator/prometheus-operator/pkg/client@v0.85.0",
    ]


def test_published_replaces_and_excludes_are_copied_as_they_are() -> None:
    assert wrapper_edits(FORK_MOD, "v9.9.9") == [
        "-replace=github.com/a/b=github.com/fork/b@v1.0.1",
        "-replace=github.com/c/d@v0.1.0=github.com/c/d@v0.1.2",
        "-exclude=github.com/e/f@v2.0.0",
    ]


def test_a_go_mod_with_only_local_replaces_gives_the_twin_replaces_alone() -> None:
    """What k8s.io/kubernetes and etcd need (their go.mod files have only local replaces)."""
    staging = {
        "Require": [{"Path": "k8s.io/api", "Version": "v0.0.0"}],
        "Replace": [{"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}}],
    }
    assert wrapper_edits(staging, "v0.36.3") == replace_args(["k8s.io/api"], "v0.36.3")


def test_the_operator_is_one_pinned_component_not_part_of_the_control_plane() -> None:
    component = component_of("prometheus-operator")
    assert component is component_of("prometheus-config-reloader")
    assert component.version == PROMETHEUS_OPERATOR_VERSION
    assert component.replace_version == PROMETHEUS_OPERATOR_VERSION
    assert component.binaries["prometheus-operator"].endswith("/cmd/operator")
    assert "-X github.com/prometheus/common/version.Version=0.85.0" in component.ldflags
    assert not set(MONITORING_BINARIES) & set(CONTROL_PLANE_BINARIES)


# --- images composed on a base ---------------------------------------------------------------


def _base(tmp_path: Path) -> images.Image:
    """A small stand-in for the Debian base: one layer, an environment."""
    layer = tmp_path / "base-layer.tar"
    layer.write_bytes(ociarchive.layer_tar([ociarchive.LayerFile("usr/bin/sh", b"#!sh")]))
    archive = tmp_path / "base.tar"
    runtime = ociarchive.RuntimeConfig(env=("PATH=/usr/bin", "SSL_CERT_FILE=/etc/x.pem"))
    info = ociarchive.write_archive(
        archive, "localcluster.local/python-base:t", [ociarchive.Layer.of(layer)], runtime
    )
    return images.Image(
        "python-base", info.refs[0], archive, info.config_digest, "key", "built", 0.0
    )


def _layer_members(archive: Path, digest: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        blob = tar.extractfile(ociarchive.blob_path(digest))
        assert blob is not None
        with tarfile.open(fileobj=io.BytesIO(blob.read())) as layer:
            return {m.name: m for m in layer.getmembers()}


def test_a_composed_image_is_the_base_plus_one_layer_with_the_runtime_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = _base(tmp_path)
    runtime = images.runtime_on(base, entrypoint=("/usr/bin/tool",), user="65534:65534")
    assert runtime.env == ("PATH=/usr/bin", "SSL_CERT_FILE=/etc/x.pem")
    files = [ociarchive.LayerFile("usr/bin/tool", b"\x7fELF tool")]
    made = images.ensure_composed("tool", "localcluster.local/tool:v1", base, files, runtime)
    assert made.action == "built"
    assert ociarchive.verify_archive(made.archive) == []
    info = ociarchive.read_archive(made.archive)
    base_info = ociarchive.read_archive(base.archive)
    assert info.refs == ("localcluster.local/tool:v1",)
    assert info.layer_digests[:-1] == base_info.layer_digests
    assert info.config["config"] == {
        "Entrypoint": ["/usr/bin/tool"],
        "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/x.pem"],
        "User": "65534:65534",
    }
    top = _layer_members(made.archive, info.layer_digests[-1])
    assert top["usr/bin/tool"].mode == 0o755
    # Unchanged inputs: reused; a changed file: a new archive.
    again = images.ensure_composed("tool", "localcluster.local/tool:v1", base, files, runtime)
    assert (again.action, again.archive) == ("reused", made.archive)
    changed = [ociarchive.LayerFile("usr/bin/tool", b"\x7fELF tool v2")]
    other = images.ensure_composed("tool", "localcluster.local/tool:v1", base, changed, runtime)
    assert other.action == "built"
    assert other.config_digest != made.config_digest


# --- the stack's manifests -------------------------------------------------------------------

SETTINGS = stackmanifests.StackSettings(
    operator_image="localcluster.local/prometheus-operator:v0.85.0",
    reloader_image="localcluster.local/prometheus-config-reloader:v0.85.0",
    prometheus_image="localcluster.local/prometheus:v3.5.0",
    prometheus_version="v3.5.0",
)


def _objects(kind: str) -> list[dict[str, Any]]:
    return [o for o in stackmanifests.stack_objects(SETTINGS) if o["kind"] == kind]


def test_the_operator_writes_only_in_the_stack_namespace() -> None:
    by_name = {o["metadata"]["name"]: o for o in _objects("ClusterRole")}
    write_verbs = {"create", "update", "patch", "delete", "deletecollection", "*"}
    for role in by_name.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"], rule
            assert "*" not in rule["resources"], rule
            if set(rule["verbs"]) & write_verbs:
                assert rule["resources"] == ["events"], f"cluster-wide write: {rule}"
    (role,) = _objects("Role")
    assert role["metadata"]["namespace"] == "monitoring"
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("statefulsets", "create") in granted
    assert ("prometheuses/status", "patch") in granted  # the operator applies its status
    assert ("secrets", "create") in granted
    assert not any(r.startswith(("alertmanager", "thanosruler")) for r, _ in granted)
    args = _objects("Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--prometheus-instance-namespaces=monitoring" in args
    assert f"--prometheus-config-reloader={SETTINGS.reloader_image}" in args


def test_prometheus_only_reads_what_service_discovery_needs() -> None:
    role = next(o for o in _objects("ClusterRole") if o["metadata"]["name"] == "prometheus")
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}
    assert sorted(r for rule in role["rules"] for r in rule["resources"]) == [
        "endpointslices",
        "pods",
        "services",
    ]


def test_the_prometheus_selects_monitors_and_rules_in_every_namespace() -> None:
    (prometheus,) = _objects("Prometheus")
    spec = prometheus["spec"]
    for field in (
        "serviceMonitorSelector",
        "serviceMonitorNamespaceSelector",
        "podMonitorSelector",
        "podMonitorNamespaceSelector",
        "ruleSelector",
        "ruleNamespaceSelector",
    ):
        assert spec[field] == {}, field
    assert (spec["version"], spec["image"], spec["replicas"]) == (
        "v3.5.0",
        "localcluster.local/prometheus:v3.5.0",
        1,
    )
    assert spec["evaluationInterval"] == "5s"
    assert spec["serviceDiscoveryRole"] == "EndpointSlice"
    assert spec["securityContext"]["runAsGroup"] == kubeobjects.NOBODY


def test_every_binding_names_an_account_and_role_that_are_defined() -> None:
    objects = stackmanifests.stack_objects(SETTINGS)
    defined = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for binding in (o for o in objects if o["kind"].endswith("Binding")):
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in defined
        for subject in binding["subjects"]:
            assert ("ServiceAccount", subject["name"]) in defined
            assert subject["namespace"] == "monitoring"
    assert objects[0]["kind"] == "Namespace"


# --- the API client --------------------------------------------------------------------------


def test_decode_returns_data_or_raises_the_error() -> None:
    ok = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert decode(json.dumps(ok).encode()) == {"resultType": "vector", "result": []}
    bad = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    with pytest.raises(PrometheusError, match="bad_data: parse error at char 3"):
        decode(json.dumps(bad).encode())


def test_the_monitoring_command_needs_a_running_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli_main(["monitoring", "--name", "absent"]) == 1
    assert "cluster 'absent' is not running" in capsys.readouterr().out


def test_the_lines_printed_for_people_name_the_service_and_a_query() -> None:
    installed = monitoring.Installed(Prometheus("http://10.244.1.5:9090"), "monitoring", 1.0)
    assert installed.port_forward == (
        "kubectl -n monitoring port-forward svc/prometheus-k8s 9090:9090"
    )
    assert installed.try_query == (
        "then: curl -s http://127.0.0.1:9090/api/v1/query"
        " --data-urlencode 'query=sum by (namespace, job) (up)'"
    )
    service = next(o for o in _objects("Service"))
    assert service["metadata"]["name"] == "prometheus-k8s"


def test_the_installer_waits_for_a_ready_pod_of_the_wanted_image() -> None:
    image = "localcluster.local/prometheus:v3.5.0"
    pod = {
        "metadata": {"name": "prometheus-k8s-0"},
        "spec": {"containers": [{"name": "prometheus", "image": image}, {"name": "reloader"}]},
        "status": {"podIP": "10.244.1.5", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert monitoring.serving_ip(pod, image) == "10.244.1.5"
    assert monitoring.serving_ip(pod, "localcluster.local/prometheus:v2.42.0") is None
    not_ready = {**pod, "status": {"podIP": "10.244.1.5", "conditions": []}}
    assert monitoring.serving_ip(not_ready, image) is None
    leaving = {**pod, "metadata": {"deletionTimestamp": "2026-12-06T04:00:00Z"}}
    assert monitoring.serving_ip(leaving, image) is None
