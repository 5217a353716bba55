"""The real node's configuration files and command lines: pure functions of a layout and network.

containerd (Debian's, own root/state/socket), the kubelet and kube-proxy (built from the pinned
Kubernetes module), the CNI bridge (Debian's plugins), CoreDNS and metrics-server (built from
their Go modules) all run inside the node's network namespace (nodenet.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster.nodenet import NodeNet
from localcluster.requirements import CNI_BIN_DIRS, cni_bin_dir

NODE_NAME = "localcluster-node"
CLUSTER_DOMAIN = "cluster.local"
#: Ports inside the node's namespace (its own network, so fixed ports cannot collide).
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
KUBE_PROXY_METRICS_PORT = 10249
DNS_PORT = 53
DNS_HEALTH_PORT = 8080
METRICS_SERVER_PORT = 4443
#: What the (first) real node runs, in start order (stop runs in reverse).
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns", "metrics-server")
#: What every further node runs (CoreDNS and metrics-server serve the cluster from the first).
WORKER_COMPONENTS = ("containerd", "kubelet", "kube-proxy")


def node_name(index: int) -> str:
    """The Node of the `index`-th real node: localcluster-node, localcluster-node-2, ..."""
    return NODE_NAME if index == 0 else f"{NODE_NAME}-{index + 1}"


def _suffix(index: int) -> str:
    return "" if index == 0 else f"-{index + 1}"


def node_components(index: int) -> tuple[str, ...]:
    """The process names (pid and log files) of the `index`-th real node, in start order."""
    if index == 0:
        return NODE_COMPONENTS
    return tuple(f"{name}{_suffix(index)}" for name in WORKER_COMPONENTS)


def kubelet_pki(index: int) -> tuple[str, str]:
    """The names (in the cluster's pki folder, without .crt/.key) of the `index`-th node's
    kubelet client and serving certificates."""
    return f"kubelet{_suffix(index)}", f"kubelet-serving{_suffix(index)}"


#: Unix sockets cannot have paths over 104 bytes; the node's live in a short folder here, named
#: by a hash of the cluster folder (removed when the node stops).
SOCKETS_DIR = Path("/run/localcluster")


@dataclass(frozen=True)
class NodeLayout:
    """Files of the `index`-th real node, all under `<cluster root>/node` (further nodes:
    `node2`, `node3`, ...; sockets: `sockets`). The cluster's host and network records are the
    first node's."""

    root: Path
    index: int = 0

    @property
    def name(self) -> str:
        return node_name(self.index)

    @property
    def sockets(self) -> Path:
        key = f"{self.root.resolve()}{_suffix(self.index)}"
        return SOCKETS_DIR / hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def base(self) -> Path:
        return self.root / ("node" if self.index == 0 else f"node{self.index + 1}")

    @property
    def containerd_root(self) -> Path:
        return self.base / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.base / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.sockets / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.base / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.base / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.base / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.base / "pod-logs"

    def config(self, name: str) -> Path:
        """A component's configuration or kubeconfig file."""
        return self.base / "config" / name

    @property
    def host_state(self) -> Path:
        """What the host looked like before the node started (hoststate.py)."""
        return self.base / "host-state.json"

    @property
    def net_state(self) -> Path:
        return self.base / "net.json"


def cgroup_root(net: NodeNet) -> str:
    """The cgroup (under every v1 controller, or the v2 root) that holds all the node's pods."""
    return f"/{net.netns}"


def containerd_config(layout: NodeLayout, sandbox_image: str) -> str:
    """containerd 1.6 config (version 2). `restrict_oom_score_adj`: this machine lacks
    CAP_SYS_RESOURCE, and without it every sandbox fails in runc."""
    state = layout.containerd_state
    return f"""version = 2
root = {json.dumps(str(layout.containerd_root))}
state = {json.dumps(str(state))}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {json.dumps(str(layout.containerd_socket))}

[ttrpc]
  address = {json.dumps(str(layout.containerd_socket) + ".ttrpc")}

[plugins."io.containerd.internal.v1.opt"]
  path = {json.dumps(str(layout.base / "containerd" / "opt"))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {json.dumps(sandbox_image)}
  restrict_oom_score_adj = true
  enable_selinux = false
  # Pod network namespaces under the state folder, not /run/netns: `down` finds them there.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {json.dumps(str(state / "runc"))}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {json.dumps(cni_bin_dir() or CNI_BIN_DIRS[0])}
    conf_dir = {json.dumps(str(layout.cni_conf_dir))}
"""


def cni_conflist(layout: NodeLayout, net: NodeNet) -> dict[str, Any]:
    """bridge (gateway, masquerade, hairpin for a pod reaching itself through its Service) +
    host-local IPAM (state in the node folder), portmap, and firewall (FORWARD accepts pod
    traffic even when a policy drops it)."""
    return {
        "cniVersion": "1.0.0",
        "name": net.netns,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
        ],
    }


def kubelet_config(layout: NodeLayout, net: NodeNet) -> dict[str, Any]:
    pki = layout.root / "pki"
    serving = kubelet_pki(layout.index)[1]
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / f"{serving}.crt"),
        "tlsPrivateKeyFile": str(pki / f"{serving}.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(net),
        # This machine mounts cgroup v1; the kubelet refuses it unless told otherwise (1.35+).
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [net.service_ip(10)],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "podLogsDir": str(layout.pod_logs),
        "serializeImagePulls": False,
        # Images are loaded from archives, never pulled: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "maxPods": 110,
        # Pod status (probes, restarts) reaches the API server quickly.
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "shutdownGracePeriod": "0s",
    }


def kubelet_args(layout: NodeLayout, net: NodeNet) -> list[str]:
    return [
        f"--config={layout.config('kubelet.yaml')}",
        f"--kubeconfig={layout.config('kubelet.kubeconfig')}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
        f"--hostname-override={layout.name}",
        f"--node-ip={net.node_ip}",
        "--node-labels=localcluster.io/node=real",
        "--v=1",
    ]


def kube_proxy_config(layout: NodeLayout, net: NodeNet) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.config("kube-proxy.kubeconfig"))},
        "hostnameOverride": layout.name,
        "mode": "iptables",
        "clusterCIDR": net.pod_cidr,
        "bindAddress": net.node_ip,
        "healthzBindAddress": f"127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{KUBE_PROXY_METRICS_PORT}",
        # NodePorts on 127.0.0.1 would need net.ipv4.conf.all.route_localnet=1.
        "iptables": {"localhostNodePorts": False},
        # Leave the host's conntrack table size and timeouts as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kube_proxy_args(layout: NodeLayout) -> list[str]:
    return [f"--config={layout.config('kube-proxy.yaml')}", "--v=1"]


def corefile(layout: NodeLayout, net: NodeNet) -> str:
    """CoreDNS answering `*.svc.cluster.local` from the API server; other names get SERVFAIL
    (this cluster has no upstream resolver to forward to)."""
    return f"""{CLUSTER_DOMAIN}:{DNS_PORT} in-addr.arpa:{DNS_PORT} ip6.arpa:{DNS_PORT} {{
    bind {net.node_ip}
    errors
    health 127.0.0.1:{DNS_HEALTH_PORT}
    ready 127.0.0.1:{DNS_HEALTH_PORT + 1}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {layout.config("coredns.kubeconfig")}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""


def coredns_args(layout: NodeLayout) -> list[str]:
    return ["-conf", str(layout.config("Corefile"))]


def metrics_server_args(layout: NodeLayout, net: NodeNet) -> list[str]:
    kubeconfig = layout.config("metrics-server.kubeconfig")
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={net.node_ip}",
        f"--secure-port={METRICS_SERVER_PORT}",
        f"--cert-dir={layout.base / 'metrics-server'}",
        "--kubelet-insecure-tls",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        "--metric-resolution=10s",
        "--kubelet-request-timeout=5s",
    ]


def system_objects(net: NodeNet) -> list[dict[str, Any]]:
    """kube-dns and metrics-server as Services without selectors whose EndpointSlices point at the
    node (both run as processes on the node, like static pods), and the metrics API."""
    objects: list[dict[str, Any]] = []
    for name, ip, ports in (
        (
            "kube-dns",
            net.service_ip(10),
            [("dns", "UDP", 53, DNS_PORT), ("dns-tcp", "TCP", 53, DNS_PORT)],
        ),
        ("metrics-server", None, [("https", "TCP", 443, METRICS_SERVER_PORT)]),
    ):
        spec: dict[str, Any] = {
            "ports": [
                {"name": n, "protocol": p, "port": port, "targetPort": target}
                for n, p, port, target in ports
            ]
        }
        if ip:
            spec["clusterIP"] = ip
        labels = {"k8s-app": name, "kubernetes.io/name": name}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
                "spec": spec,
            }
        )
        objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-node",
                    "namespace": "kube-system",
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "localcluster",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [net.node_ip],
                        "conditions": {"ready": True},
                        "nodeName": NODE_NAME,
                    }
                ],
                "ports": [{"name": n, "protocol": p, "port": target} for n, p, _, target in ports],
            }
        )
    objects.append(
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": {"k8s-app": "metrics-server"}},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                # metrics-server serves a self-signed certificate, as in its own manifests.
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }
    )
    return objects


def write_configs(layout: NodeLayout, net: NodeNet, sandbox_image: str) -> None:
    """Every file the node's components read (kubeconfigs are written by the caller)."""
    for folder in (layout.config("x").parent, layout.cni_conf_dir, layout.cni_ipam_dir):
        folder.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.parent.mkdir(parents=True, exist_ok=True)
    layout.sockets.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(containerd_config(layout, sandbox_image))
    (layout.cni_conf_dir / "10-localcluster.conflist").write_text(
        json.dumps(cni_conflist(layout, net), indent=2)
    )
    layout.config("kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(layout, net)))
    layout.config("kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(layout, net)))
    layout.config("Corefile").write_text(corefile(layout, net))
