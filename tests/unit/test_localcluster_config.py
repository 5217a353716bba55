"""localcluster's pure parts: kubeconfig, certificates, command lines, write counting, paths."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from localcluster import binaries, paths
from localcluster.cli import main as cli_main
from localcluster.cluster import clear, node_ready
from localcluster.flags import (
    AUDIT_POLICY,
    KWOK_NODE_ANNOTATION,
    Layout,
    Ports,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    fake_node,
    kwok_args,
    scheduler_args,
)
from localcluster.handle import KubeCluster, KubectlError, server_of
from localcluster.kubeconfig import render_kubeconfig
from localcluster.metrics import count_writes
from localcluster.pki import write_pki
from localcluster.versions import component_of

pytestmark = pytest.mark.unit

PORTS = Ports(etcd_client=2379, etcd_peer=2380, apiserver=6443, controller_manager=10257,
              scheduler=10259, kwok=10247)  # fmt: skip
LAYOUT = Layout(Path("/state/c1"))


def _sample(verb: str, resource: str, value: int, dry_run: str = "", sub: str = "") -> str:
    """One apiserver_request_total line, labelled as the API server labels it."""
    labels = (
        f'code="200",component="apiserver",dry_run="{dry_run}",group="",resource="{resource}",'
        f'scope="resource",subresource="{sub}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests.",
        "# TYPE apiserver_request_total counter",
        _sample("POST", "configmaps", 7),
        _sample("APPLY", "configmaps", 2),  # server-side apply
        _sample("PUT", "deployments", 3, sub="status"),
        _sample("PATCH", "configmaps", 1),
        _sample("DELETE", "configmaps", 1),
        _sample("DELETECOLLECTION", "pods", 1),
        _sample("POST", "configmaps", 5, dry_run="All"),  # dry runs write nothing
        _sample("GET", "configmaps", 40),
        _sample("LIST", "configmaps", 9),
        _sample("WATCH", "configmaps", 4),
        _sample("PUT", "leases", 30),  # the cluster's own heartbeats
        _sample("PATCH", "nodes", 2, sub="status"),
        "# HELP apiserver_request_duration_seconds Response latency.",
        "# TYPE apiserver_request_duration_seconds histogram",
        'apiserver_request_duration_seconds_count{verb="POST",resource="configmaps"} 1000',
        "",
    ]
)


def test_count_writes_sums_write_verbs_only() -> None:
    # POST 7 + APPLY 2 + PUT 3 + PATCH 1 + DELETE 1 + DELETECOLLECTION 1
    assert count_writes(METRICS) == 15


def test_count_writes_can_include_the_clusters_own_heartbeats() -> None:
    assert count_writes(METRICS, ignore_resources=()) == 15 + 30 + 2


def test_count_writes_of_no_requests_is_zero() -> None:
    assert count_writes("# HELP x y\n# TYPE x counter\nx 3\n") == 0


def test_kubeconfig_is_self_contained_with_one_current_context() -> None:
    text = render_kubeconfig("vod", "https://127.0.0.1:6443", b"CA", b"CERT", b"KEY")
    config = yaml.safe_load(text)
    assert config["current-context"] == "vod"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert server_of(text) == "https://127.0.0.1:6443"


def test_server_of_follows_the_current_context() -> None:
    text = yaml.safe_dump(
        {
            "clusters": [
                {"name": "a", "cluster": {"server": "https://a:1"}},
                {"name": "b", "cluster": {"server": "https://b:2"}},
            ],
            "contexts": [
                {"name": "ctx-a", "context": {"cluster": "a", "user": "u"}},
                {"name": "ctx-b", "context": {"cluster": "b", "user": "u"}},
            ],
            "current-context": "ctx-b",
        }
    )
    assert server_of(text) == "https://b:2"


def test_cluster_handle_env_carries_the_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(render_kubeconfig("t", "https://127.0.0.1:1", b"", b"", b""))
    cluster = KubeCluster(kubeconfig=kubeconfig)
    assert cluster.server == "https://127.0.0.1:1"
    assert cluster.env["KUBECONFIG"] == str(kubeconfig)


def test_kubectl_error_message_carries_stderr() -> None:
    err = KubectlError(1, ["kubectl", "get", "x"], "", 'error: the server doesn\'t have "x"')
    assert "the server doesn't have" in str(err)


def test_pki_chains_to_the_ca_and_names_the_admin_a_master(tmp_path: Path) -> None:
    write_pki(tmp_path, "10.0.0.1")
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    serving = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    admin = x509.load_pem_x509_certificate((tmp_path / "admin.crt").read_bytes())
    for leaf in (serving, admin):
        leaf.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("10.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    orgs = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    assert (tmp_path / "sa.key").stat().st_mode & 0o077 == 0
    assert "BEGIN PUBLIC KEY" in (tmp_path / "sa.pub").read_text()
    assert isinstance(serving.public_key(), ec.EllipticCurvePublicKey)


def _flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]


def test_every_component_listens_on_loopback_only() -> None:
    etcd = etcd_args(LAYOUT, PORTS)
    assert _flag(etcd, "listen-client-urls") == "http://127.0.0.1:2379"
    assert _flag(etcd, "listen-peer-urls") == "http://127.0.0.1:2380"
    for args in (
        apiserver_args(LAYOUT, PORTS),
        controller_manager_args(LAYOUT, PORTS),
        scheduler_args(LAYOUT, PORTS),
    ):
        assert _flag(args, "bind-address") == "127.0.0.1"
    assert _flag(kwok_args(LAYOUT, PORTS, Path("/s.yaml")), "server-address") == "127.0.0.1:10247"


def test_apiserver_uses_rbac_client_certs_and_the_service_account_keys() -> None:
    args = apiserver_args(LAYOUT, PORTS)
    assert _flag(args, "authorization-mode") == "RBAC"
    assert _flag(args, "client-ca-file") == "/state/c1/pki/ca.crt"
    assert _flag(args, "service-account-signing-key-file") == "/state/c1/pki/sa.key"
    assert _flag(args, "service-account-key-file") == "/state/c1/pki/sa.pub"
    assert _flag(args, "etcd-servers") == "http://127.0.0.1:2379"
    assert _flag(args, "secure-port") == "6443"


def test_apiserver_audits_every_write_and_no_read() -> None:
    args = apiserver_args(LAYOUT, PORTS)
    assert _flag(args, "audit-policy-file") == "/state/c1/audit-policy.yaml"
    assert _flag(args, "audit-log-path") == "/state/c1/logs/audit.log"
    policy = yaml.safe_load(AUDIT_POLICY)
    assert policy["kind"] == "Policy"
    writes, rest = policy["rules"]
    assert writes == {
        "level": "Metadata",
        "verbs": ["create", "update", "patch", "delete", "deletecollection"],
    }
    assert rest == {"level": "None"}
    assert LAYOUT.audit_policy in LAYOUT.entries()


def test_controller_manager_signs_tokens_and_publishes_the_root_ca() -> None:
    args = controller_manager_args(LAYOUT, PORTS)
    assert _flag(args, "service-account-private-key-file") == "/state/c1/pki/sa.key"
    assert _flag(args, "root-ca-file") == "/state/c1/pki/ca.crt"
    assert _flag(args, "controllers").startswith("*,")
    assert _flag(args, "leader-elect") == "false"


def test_etcd_skips_fsync_for_speed() -> None:
    assert "--unsafe-no-fsync=true" in etcd_args(LAYOUT, PORTS)


def test_kwok_manages_exactly_the_fake_node() -> None:
    key, value = KWOK_NODE_ANNOTATION
    args = kwok_args(LAYOUT, PORTS, Path("/cache/stages.yaml"))
    assert _flag(args, "manage-nodes-with-annotation-selector") == f"{key}={value}"
    assert _flag(args, "manage-all-nodes") == "false"
    assert _flag(args, "config") == "/cache/stages.yaml"
    node = fake_node("n0")
    assert node["metadata"] == {
        "name": "n0",
        "annotations": {key: value},
        "labels": {
            "kubernetes.io/hostname": "n0",
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        },
    }


def test_cache_is_versioned_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert paths.bin_dir(component_of("etcd")) == tmp_path / "vod-operator/bin/etcd-v3.6.16"
    assert binaries.cached("kube-apiserver") == (
        tmp_path / "vod-operator/bin/kubernetes-v1.36.3/kube-apiserver"
    )


def _fake_binary(folder: Path, name: str, prints: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{prints}'\n")
    path.chmod(0o755)
    return path


def test_a_fitting_binary_in_kubebuilder_assets_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binaries.reported_version.cache_clear()
    fake = _fake_binary(tmp_path / "assets", "kube-apiserver", "Kubernetes v1.36.2")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert binaries.external("kube-apiserver") == fake


def test_a_binary_of_another_minor_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binaries.reported_version.cache_clear()
    _fake_binary(tmp_path / "bin", "etcd", "etcd Version: 3.5.21")
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    assert binaries.external("etcd") is None
    assert binaries.find("etcd") is None
    with pytest.raises(FileNotFoundError, match="make cluster-build"):
        binaries.require("etcd")


@pytest.mark.parametrize(
    ("node", "ready"),
    [
        ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, True),
        ({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False),
        ({"status": {"conditions": [{"type": "MemoryPressure", "status": "True"}]}}, False),
        ({"status": {}}, False),
        ({"metadata": {"name": "n0"}}, False),
        (None, False),
    ],
)
def test_node_ready_reads_the_ready_condition(node: dict[str, Any] | None, ready: bool) -> None:
    assert node_ready(node) is ready


def test_clear_removes_only_localclusters_own_entries(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    for folder in (layout.pki, layout.logs, layout.pids, layout.etcd_data / "member"):
        folder.mkdir(parents=True)
    layout.kubeconfig.write_text("x")
    layout.state.write_text("{}")
    (tmp_path / "operator.log").write_text("someone else's")
    clear(layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["operator.log"]


def test_build_refuses_unknown_binaries(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["build", "kubeadm"]) == 2
    assert "unknown binaries: kubeadm" in capsys.readouterr().out


def test_a_cluster_folder_too_deep_for_the_kubelets_sockets_is_refused_by_name() -> None:
    from localcluster import realnode
    from localcluster.node import NodeLayout

    realnode.check_socket_room(NodeLayout(Path("/tmp/pytest-of-root/pytest-9/kube0")))
    deep = Path("/tmp/pytest-of-root/pytest-195/test_a_real_node_leaves_nothin0/cleanup")
    with pytest.raises(RuntimeError, match="too deep for a real node"):
        realnode.check_socket_room(NodeLayout(deep))


def test_the_socket_room_is_checked_for_each_node_folder() -> None:
    """A second node's folder (`node2`) is one byte deeper than the first's: a cluster folder
    that just fits one node is refused for two."""
    from localcluster import realnode
    from localcluster.engine import MAX_SOCKET_PATH
    from localcluster.node import NodeLayout

    probe = len(str(NodeLayout(Path("/")).kubelet_root / realnode.KUBELET_SOCKET))
    folder = Path("/" + "x" * (MAX_SOCKET_PATH - probe - 1))  # "/x...x" + "/node/..."
    realnode.check_socket_room(NodeLayout(folder))
    with pytest.raises(RuntimeError, match="too deep for a real node"):
        realnode.check_socket_room(NodeLayout(folder, 1))
