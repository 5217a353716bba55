"""The real node's pure parts: network plan, configs, preflight message, host-state diff."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from localcluster import hoststate, nodelink
from localcluster.flags import KWOK_TAINT, Layout, Ports, apiserver_args, fake_node
from localcluster.node import (
    NODE_NAME,
    NodeLayout,
    cgroup_root,
    cni_conflist,
    containerd_config,
    corefile,
    kube_proxy_config,
    kubelet_args,
    kubelet_config,
    kubelet_pki,
    node_components,
    node_name,
    system_objects,
)
from localcluster.nodenet import NodeNet, enter
from localcluster.pki import write_pki
from localcluster.preflight import NODE_TOOLS, WHAT
from localcluster.requirements import missing_message, missing_tools

pytestmark = pytest.mark.unit

NET = NodeNet(7)
LAYOUT = NodeLayout(Path("/state/c1"))
PORTS = Ports(2379, 2380, 6443, 10257, 10259, 10247)


def test_node_network_addresses_are_derived_from_the_slot_and_do_not_overlap() -> None:
    assert (NET.host_ip, NET.node_ip) == ("10.251.7.1", "10.251.7.2")
    assert NET.service_ip(1) == "10.96.7.1"
    assert NET.service_ip(10) == "10.96.7.10"
    networks = [ipaddress.ip_network(c) for c in (NET.pod_cidr, NET.service_cidr, "10.251.7.0/30")]
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])
    assert not ipaddress.ip_network(NET.pod_cidr).overlaps(
        ipaddress.ip_network(NodeNet(8).pod_cidr)
    )
    assert len(NET.host_veth) <= 15
    assert NET.host_veth != NET.node_veth


#: A second node of NET's cluster, in slot 9.
SECOND = NodeNet(9, first_slot=7)


def test_a_second_node_has_its_own_pods_and_folder_and_the_first_nodes_services() -> None:
    assert NET.is_first
    assert not SECOND.is_first
    assert SECOND.netns == "lcnode9"
    assert SECOND.node_ip == "10.251.9.2"
    assert SECOND.pod_cidr == "10.244.9.0/24"
    assert SECOND.service_cidr == NET.service_cidr == "10.96.7.0/24"
    assert SECOND.api_ip == NET.api_ip == NET.host_ip  # what the API server advertises
    assert SECOND.routes() == [SECOND.pod_cidr]  # the host routes Services via the first only
    assert NET.routes() == [NET.pod_cidr, NET.service_cidr]
    second = NodeLayout(Path("/state/c1"), 1)
    assert (second.name, node_name(0)) == ("localcluster-node-2", NODE_NAME)
    assert second.base == Path("/state/c1/node2")
    assert second.sockets != LAYOUT.sockets
    assert NodeLayout(Path("/state/c1"), 0) == LAYOUT
    assert node_components(1) == ("containerd-2", "kubelet-2", "kube-proxy-2")
    assert kubelet_pki(1) == ("kubelet-2", "kubelet-serving-2")
    config = kubelet_config(second, SECOND)
    assert config["clusterDNS"] == ["10.96.7.10"]  # CoreDNS of the first node
    assert config["tlsCertFile"] == "/state/c1/pki/kubelet-serving-2.crt"
    assert "--hostname-override=localcluster-node-2" in kubelet_args(second, SECOND)
    assert kube_proxy_config(second, SECOND)["hostnameOverride"] == "localcluster-node-2"


def test_nodes_route_each_others_pods_and_node_ips_over_their_switch() -> None:
    assert nodelink.switch_netns(NET.cluster_slot) == "lclink7"
    assert (nodelink.link_ip(NET), nodelink.link_ip(SECOND)) == ("10.252.7.7", "10.252.7.9")
    assert nodelink.peer_routes(NET, [NET, SECOND]) == [
        ("10.244.9.0/24", "10.252.7.9"),
        ("10.251.9.2/32", "10.252.7.9"),
    ]
    assert nodelink.peer_routes(SECOND, [NET, SECOND]) == [
        ("10.244.7.0/24", "10.252.7.7"),
        ("10.251.7.2/32", "10.252.7.7"),
    ]
    assert nodelink.peer_routes(NET, [NET]) == []


def test_node_processes_enter_only_the_network_namespace() -> None:
    argv = enter(NET, ["kubelet", "--v=1"])
    assert argv[:2] == ["nsenter", "--net=/run/netns/lcnode7"]
    assert not any(a.startswith("--mount") for a in argv)
    assert argv[-2:] == ["kubelet", "--v=1"]


def test_containerd_keeps_everything_under_the_cluster_folder() -> None:
    config = tomllib.loads(containerd_config(LAYOUT, "localcluster.local/pause:x"))
    assert config["root"].startswith("/state/c1/node/")
    assert config["state"].startswith("/state/c1/node/")
    assert config["grpc"]["address"].startswith("/run/localcluster/")
    assert len(config["ttrpc"]["address"]) < 104  # a unix socket's path limit
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localcluster.local/pause:x"
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["cni"]["conf_dir"].startswith("/state/c1/node/")
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["Root"].startswith("/state/c1/node/")


def test_cni_bridge_uses_the_node_pod_range_and_keeps_ipam_state_in_the_folder() -> None:
    conflist = cni_conflist(LAYOUT, NET)
    bridge = conflist["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["isGateway"]
    assert bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.7.0/24"}]]
    assert bridge["ipam"]["dataDir"].startswith("/state/c1/node/")
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall"]
    assert conflist["name"] == NET.netns  # libcni's cache entries carry the node's name


def test_kubelet_runs_on_cgroup_v1_with_cluster_dns_and_x509_webhook_auth() -> None:
    config = kubelet_config(LAYOUT, NET)
    assert config["failCgroupV1"] is False
    assert config["cgroupRoot"] == cgroup_root(NET) == "/lcnode7"
    assert config["clusterDNS"] == ["10.96.7.10"]
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authorization"]["mode"] == "Webhook"
    assert config["address"] == NET.node_ip
    assert config["podLogsDir"].startswith("/state/c1/node/")
    args = kubelet_args(LAYOUT, NET)
    assert f"--hostname-override={NODE_NAME}" in args
    assert f"--node-ip={NET.node_ip}" in args
    assert "--root-dir=/state/c1/node/kubelet" in args


def test_kube_proxy_leaves_host_conntrack_and_route_localnet_alone() -> None:
    config = kube_proxy_config(LAYOUT, NET)
    assert config["mode"] == "iptables"
    assert config["clusterCIDR"] == NET.pod_cidr
    assert config["iptables"]["localhostNodePorts"] is False
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["conntrack"]["tcpEstablishedTimeout"] == "0s"


def test_coredns_serves_the_cluster_domain_on_the_node_address() -> None:
    text = corefile(LAYOUT, NET)
    assert text.startswith("cluster.local:53 ")
    assert f"bind {NET.node_ip}" in text
    assert "kubeconfig /state/c1/node/config/coredns.kubeconfig" in text


def test_system_services_point_at_the_node() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in system_objects(NET)}
    assert objects[("Service", "kube-dns")]["spec"]["clusterIP"] == "10.96.7.10"
    dns_slice = objects[("EndpointSlice", "kube-dns-node")]
    assert dns_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert dns_slice["endpoints"][0]["addresses"] == [NET.node_ip]
    assert {p["protocol"] for p in dns_slice["ports"]} == {"UDP", "TCP"}
    api_service = objects[("APIService", "v1beta1.metrics.k8s.io")]
    assert api_service["spec"]["service"] == {
        "name": "metrics-server",
        "namespace": "kube-system",
        "port": 443,
    }


def test_apiserver_with_a_node_is_reachable_from_pods_and_reaches_the_kubelet() -> None:
    args = apiserver_args(Layout(Path("/state/c1")), PORTS, NET)
    assert "--bind-address=0.0.0.0" in args
    assert f"--advertise-address={NET.host_ip}" in args
    assert "--endpoint-reconciler-type=none" not in args  # the kubernetes Service gets endpoints
    assert "--authorization-mode=Node,RBAC" in args
    assert "--kubelet-preferred-address-types=InternalIP,Hostname" in args
    assert f"--service-cluster-ip-range={NET.service_cidr}" in args
    without = apiserver_args(Layout(Path("/state/c1")), PORTS)
    assert "--bind-address=127.0.0.1" in without
    assert "--endpoint-reconciler-type=none" in without


def test_kwok_nodes_are_tainted_so_real_workloads_land_on_the_real_node() -> None:
    assert fake_node("kwok-node-0", tainted=True)["spec"] == {"taints": [KWOK_TAINT]}
    assert fake_node("kwok-node-0")["spec"] == {"taints": []}  # alone, kwok runs everything
    assert KWOK_TAINT["effect"] == "NoSchedule"


def test_pki_for_a_node_names_each_identity_as_kubernetes_expects(tmp_path: Path) -> None:
    write_pki(tmp_path, "10.96.7.1", [(NODE_NAME, NET.node_ip)], NET.host_ip)

    def subject(name: str) -> tuple[str, str | None]:
        cert = x509.load_pem_x509_certificate((tmp_path / f"{name}.crt").read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(cn), str(orgs[0].value) if orgs else None

    assert subject("kubelet") == (f"system:node:{NODE_NAME}", "system:nodes")
    assert subject("kube-proxy") == ("system:kube-proxy", None)
    assert subject("front-proxy-client") == ("front-proxy-client", None)
    serving = x509.load_pem_x509_certificate((tmp_path / "kubelet-serving.crt").read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(NET.node_ip) in sans.get_values_for_type(x509.IPAddress)
    apiserver = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    api_sans = apiserver.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    api_ips = api_sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("10.96.7.1") in api_ips  # the kubernetes Service, from pods
    assert ipaddress.ip_address(NET.host_ip) in api_ips  # the node's components, via the veth


def test_pki_gives_each_node_its_own_kubelet_identity(tmp_path: Path) -> None:
    write_pki(tmp_path, "10.96.7.1", [(NODE_NAME, NET.node_ip), (node_name(1), SECOND.node_ip)])
    for index, ip in enumerate((NET.node_ip, SECOND.node_ip)):
        client, serving_name = kubelet_pki(index)
        cert = x509.load_pem_x509_certificate((tmp_path / f"{client}.crt").read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == f"system:node:{node_name(index)}"
        serving = x509.load_pem_x509_certificate((tmp_path / f"{serving_name}.crt").read_bytes())
        sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(ip)]


def test_preflight_names_root_and_the_debian_packages_to_install() -> None:
    absent = {"ctr", "conntrack", "nsenter"}
    missing = missing_tools(NODE_TOOLS, lambda tool: None if tool in absent else f"/bin/{tool}")
    assert missing == ["ctr", "conntrack", "nsenter"]
    message = missing_message(missing, False, WHAT)
    assert message is not None
    assert "run it as root" in message
    assert "apt-get install conntrack containerd util-linux" in message
    assert "LOCALCLUSTER_REAL_NODE=0" in message
    assert missing_message([], True, WHAT) is None


def test_mounts_under_lists_deepest_first(tmp_path: Path) -> None:
    # the real mount table: /proc is mounted, and nothing is mounted under a fresh tmp folder
    assert hoststate.mounts_under(Path("/proc"))[-1] == "/proc"
    assert hoststate.mounts_under(tmp_path) == []


def test_leftovers_report_changed_sysctls_and_new_chains(tmp_path: Path) -> None:
    now = hoststate.snapshot()
    sockets = tmp_path / "sockets"
    assert hoststate.leftovers(now, tmp_path, "/lcnode-none", None, "lcnode-none", sockets) == []
    changed = hoststate.HostState(
        sysctls={**now.sysctls, "vm.overcommit_memory": "7"},
        iptables=now.iptables[1:],
        shared_files=now.shared_files,
    )
    found = hoststate.leftovers(changed, tmp_path, "/lcnode-none", None, "lcnode-none", sockets)
    assert any(f.startswith("sysctl vm.overcommit_memory=") for f in found)
    if now.iptables:
        assert f"iptables chain {now.iptables[0]}" in found
