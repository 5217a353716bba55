"""Command lines of the control plane's processes: pure functions of a layout and ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localcluster.nodenet import NodeNet

#: The Service range without a real node (with one, the node's network decides: nodenet.py): a
#: /16, as scale runs hold a Service per VideoPlatform (a /24 ran out of ClusterIPs at 253, and
#: the operator retried the refused Services at every resync: the "idle" writes of issue 20).
SERVICE_CIDR = "10.0.0.0/16"
SERVICE_IP = "10.0.0.1"
#: kwok's simulated pods get addresses here (never routed; apart from the real node's pods).
KWOK_POD_CIDR = "10.245.0.0/16"
#: kwok's nodes carry this taint, so real workloads land on the real node; scale tests that want
#: simulated pods tolerate it (and select `type: kwok`).
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: kwok manages only Nodes carrying this annotation (the ones localcluster creates).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: Controllers kube-controller-manager runs: all default ones except the node lifecycle controller
#: (kwok's fast node stage marks the node Ready once and sends no heartbeats; without this the
#: node would be tainted unreachable after 40 s and its pods evicted).
CONTROLLERS = "*,-node-lifecycle-controller"
#: The API server's audit policy: every write (who, which user agent, what, when) at Metadata
#: level into logs/audit.log, reads not at all (so that tests can check who wrote what, e.g.
#: that an operator replica wrote nothing after it lost its Lease).
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""
#: Start order; stop runs in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


@dataclass(frozen=True)
class Layout:
    """Files of one cluster, all under `root`."""

    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def audit_policy(self) -> Path:
        return self.root / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """One JSON audit event per line (writes only: AUDIT_POLICY)."""
        return self.logs / "audit.log"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def pki_file(self, name: str) -> Path:
        return self.pki / name

    def cert_dir(self, component: str) -> Path:
        """Where a component writes its self-signed serving certificate."""
        return self.root / "certs" / component

    def entries(self) -> list[Path]:
        """Everything localcluster creates under `root` (what `clear` removes)."""
        files = [self.kubeconfig, self.state, self.audit_policy]
        folders = [self.pki, self.etcd_data, self.logs, self.pids, self.root / "certs"]
        nodes = [self.root / "node", *sorted(self.root.glob("node[0-9]*"))]  # node, node2, ...
        return [*files, *folders, *nodes]


def etcd_args(layout: Layout, ports: Ports) -> list[str]:
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    client = f"http://127.0.0.1:{ports.etcd_client}"
    return [
        "--name=localcluster",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=localcluster={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def service_cidr(net: NodeNet | None) -> str:
    return SERVICE_CIDR if net is None else net.service_cidr


def service_ip(net: NodeNet | None) -> str:
    return SERVICE_IP if net is None else net.service_ip(1)


def apiserver_args(layout: Layout, ports: Ports, net: NodeNet | None = None) -> list[str]:
    pki = layout.pki_file
    if net is None:
        network = [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The `kubernetes` Service's endpoints would be 127.0.0.1, which validation refuses.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
        ]
    else:
        network = [
            # Reachable from the node's namespace through the veth (and on 127.0.0.1 for
            # kubeconfigs); the `kubernetes` Service's endpoint is the host side of the veth.
            "--bind-address=0.0.0.0",
            f"--advertise-address={net.host_ip}",
            "--authorization-mode=Node,RBAC",
            # logs/exec/port-forward reach the kubelet by its InternalIP, with a client cert.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={pki('apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={pki('ca.crt')}",
            # Aggregated APIs (metrics-server) get the caller through the front proxy.
            f"--requestheader-client-ca-file={pki('front-proxy-ca.crt')}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki('front-proxy-client.crt')}",
            f"--proxy-client-key-file={pki('front-proxy-client.key')}",
            "--enable-aggregator-routing=true",
        ]
    return [
        *network,
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.cert_dir('kube-apiserver')}",
        f"--tls-cert-file={pki('apiserver.crt')}",
        f"--tls-private-key-file={pki('apiserver.key')}",
        f"--client-ca-file={pki('ca.crt')}",
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--service-cluster-ip-range={service_cidr(net)}",
        "--allow-privileged=true",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki('sa.pub')}",
        f"--service-account-signing-key-file={pki('sa.key')}",
        # Its node.kubernetes.io/not-ready taint is lifted by the node lifecycle controller,
        # which does not run (see CONTROLLERS): kwok's node is Ready from the start.
        "--disable-admission-plugins=TaintNodesByCondition",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
    ]


def _component_common(layout: Layout, port: int, name: str) -> list[str]:
    return [
        f"--kubeconfig={layout.kubeconfig}",
        f"--authentication-kubeconfig={layout.kubeconfig}",
        f"--authorization-kubeconfig={layout.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.cert_dir(name)}",
        "--leader-elect=false",
    ]


#: HorizontalPodAutoscalers act within seconds (defaults: 15 s sync, 5 min scale-down window), so
#: a scale-out and the scale-in after it are seen in a test or a demo.
HPA_FLAGS = (
    "--horizontal-pod-autoscaler-sync-period=5s",
    "--horizontal-pod-autoscaler-downscale-stabilization=30s",
)


#: Client-side rate limits of the controllers and the scheduler, raised from the defaults
#: (controller-manager 20 QPS / burst 30, scheduler 50 / 100) as on large clusters: with a
#: thousand Deployments created at once, the deployment controller alone makes ~3000 requests
#: and would spend minutes in its token bucket. The API server's own limits (max in-flight,
#: priority and fairness) still apply: benchmarks measure the API server, not a client's bucket.
CLIENT_RATE_FLAGS = ("--kube-api-qps=300", "--kube-api-burst=600")


def controller_manager_args(layout: Layout, ports: Ports, net: NodeNet | None = None) -> list[str]:
    pki = layout.pki_file
    return [
        *_component_common(layout, ports.controller_manager, "kube-controller-manager"),
        f"--controllers={CONTROLLERS}",
        f"--service-account-private-key-file={pki('sa.key')}",
        f"--root-ca-file={pki('ca.crt')}",
        f"--cluster-signing-cert-file={pki('ca.crt')}",
        f"--cluster-signing-key-file={pki('ca.key')}",
        f"--service-cluster-ip-range={service_cidr(net)}",
        *HPA_FLAGS,
        *CLIENT_RATE_FLAGS,
    ]


def scheduler_args(layout: Layout, ports: Ports) -> list[str]:
    return [*_component_common(layout, ports.scheduler, "kube-scheduler"), *CLIENT_RATE_FLAGS]


def kwok_args(layout: Layout, ports: Ports, stages: Path) -> list[str]:
    key, value = KWOK_NODE_ANNOTATION
    return [
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        f"--cidr={KWOK_POD_CIDR}",
        "--node-ip=127.0.0.1",
        f"--server-address=127.0.0.1:{ports.kwok}",
    ]


def fake_node(name: str, tainted: bool = False) -> dict[str, object]:
    """A Node kwok manages (it fills in status: Ready, capacity, addresses); `tainted` beside
    a real node, so that only workloads tolerating KWOK_TAINT land on it."""
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"taints": [KWOK_TAINT] if tainted else []},
    }
