"""KEDA in the local cluster, the pure parts: its pinned component (a wrapper module copying its
go.mod's replaces), its certificates, and its manifests (least privilege, the APIService)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from localcluster import kedamanifests, pki
from localcluster.cli import main as cli_main
from localcluster.gomod import wrapper_edits
from localcluster.kedamanifests import KedaSettings, keda_objects, service_dns_names
from localcluster.versions import CONTROL_PLANE_BINARIES, KEDA_BINARIES, KEDA_VERSION, component_of

pytestmark = pytest.mark.unit

SETTINGS = KedaSettings("local/keda-operator:v", "local/keda-adapter:v", KEDA_VERSION)
# As `go mod edit -json` prints KEDA v2.20.2's go.mod (trimmed): only published pins.
KEDA_MOD = {
    "Require": [{"Path": "k8s.io/client-go", "Version": "v0.35.5"}],
    "Replace": [
        {"Old": {"Path": "k8s.io/client-go"},
         "New": {"Path": "k8s.io/client-go", "Version": "v0.35.5"}},
        {"Old": {"Path": "sigs.k8s.io/controller-runtime"},
         "New": {"Path": "sigs.k8s.io/controller-runtime", "Version": "v0.23.3"}},
    ],
}  # fmt: skip


def test_keda_is_one_pinned_component_outside_the_control_plane() -> None:
    component = component_of("keda-operator")
    assert component is component_of("keda-adapter")
    assert component.module == "github.com/kedacore/keda/v2"
    assert component.version == KEDA_VERSION
    assert component.replace_version == KEDA_VERSION  # its go.mod's replaces are copied
    assert set(component.binaries) == set(KEDA_BINARIES)
    assert not set(KEDA_BINARIES) & set(CONTROL_PLANE_BINARIES)
    assert any(f"version.Version={KEDA_VERSION[1:]}" in flag for flag in component.ldflags)


def test_the_wrapper_module_copies_kedas_pins() -> None:
    assert wrapper_edits(KEDA_MOD, KEDA_VERSION) == [
        "-replace=k8s.io/client-go=k8s.io/client-go@v0.35.5",
        "-replace=sigs.k8s.io/controller-runtime=sigs.k8s.io/controller-runtime@v0.23.3",
    ]


def test_one_certificate_serves_and_authenticates_both_services() -> None:
    ca = pki.make_ca("keda-ca")
    cert, _ = pki.issue(
        ca, "keda-operator", server=True, client_too=True, dns_names=service_dns_names("keda")
    )
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        "keda-operator.keda.svc",
        "keda-operator.keda.svc.cluster.local",  # the metrics server's gRPC client
        "keda-metrics-apiserver.keda.svc",  # the aggregation layer
        "keda-metrics-apiserver.keda.svc.cluster.local",
    }
    server_only, _ = pki.issue(ca, "x", server=True)
    only = server_only.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(only) == [ExtendedKeyUsageOID.SERVER_AUTH]


def _objects() -> list[dict[str, Any]]:
    return keda_objects(SETTINGS, b"CA", b"CERT", b"KEY")


def _rules(kind: str, name: str) -> list[dict[str, Any]]:
    (found,) = [o for o in _objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    rules: list[dict[str, Any]] = found["rules"]
    return rules


def test_no_wildcards_and_secrets_only_in_kedas_namespace() -> None:
    for obj in _objects():
        if obj["kind"] in ("ClusterRole", "Role"):
            for rule in obj["rules"]:
                assert "*" not in rule["apiGroups"], obj["metadata"]["name"]
                assert "*" not in rule["verbs"], obj["metadata"]["name"]
                if rule["apiGroups"] != ["external.metrics.k8s.io"]:  # its resources: metric names
                    assert not any(r.startswith("*") for r in rule["resources"]), rule
                if obj["kind"] == "ClusterRole":
                    assert "secrets" not in rule["resources"], obj["metadata"]["name"]
    (role,) = _rules("Role", "keda-operator")
    assert role["resources"] == ["secrets"]
    assert role["verbs"] == ["get", "list", "watch"]


def test_the_operator_scales_deployments_and_owns_hpas_only() -> None:
    rules = _rules("ClusterRole", "keda-operator")
    writes = {
        (group, resource)
        for rule in rules
        if {"create", "update", "patch", "delete"} & set(rule["verbs"])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert ("apps", "deployments/scale") in writes
    assert ("autoscaling", "horizontalpodautoscalers") in writes
    assert ("apps", "deployments") not in writes
    assert not {r for g, r in writes if g == "" and r != "events"}  # no core writes but Events


def test_the_api_service_trusts_the_ca_and_the_pods_mount_the_certificates() -> None:
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    api = by_kind[("APIService", "v1beta1.external.metrics.k8s.io")]["spec"]
    assert base64.b64decode(api["caBundle"]) == b"CA"
    assert "insecureSkipTLSVerify" not in api
    assert api["service"] == {"name": "keda-metrics-apiserver", "namespace": "keda", "port": 443}
    secret = by_kind[("Secret", kedamanifests.CERT_SECRET)]
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    operator = by_kind[("Deployment", "keda-operator")]["spec"]["template"]["spec"]
    assert "--enable-cert-rotation=false" in operator["containers"][0]["args"]
    assert operator["volumes"][0]["secret"]["secretName"] == kedamanifests.CERT_SECRET
    adapter = by_kind[("Deployment", "keda-metrics-apiserver")]["spec"]["template"]["spec"]
    assert adapter["serviceAccountName"] == "keda-metrics-apiserver"
    assert "--cert-dir=/certs" in adapter["containers"][0]["args"]
    kinds = [o["kind"] for o in _objects()]
    assert kinds.index("Namespace") == 0
    assert kinds.index("APIService") == len(kinds) - 1  # once its Service and pods are applied


def test_the_keda_command_needs_a_running_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli_main(["keda", "--name", "absent"]) == 1
    assert "cluster 'absent' is not running" in capsys.readouterr().out
