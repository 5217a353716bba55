"""The pinned versions of every binary the local control plane uses, and how to build each one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.21.4"
COREDNS_VERSION = "v1.14.7"
METRICS_SERVER_VERSION = "v0.8.0"
#: SeaweedFS publishes no tagged Go module: this is the pseudo-version the module proxy serves.
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
#: grafana's dashboard-linter (Apache-2.0), the pseudo-version kubernetes-mixin pins in its
#: scripts/go.mod: the module proxy serves it, its go.mod has no replace directives and needs only
#: Prometheus' PromQL parser (its later tags pull Loki and Grafana's app SDK, and a replace).
DASHBOARD_LINTER_VERSION = "v0.0.0-20231114210226-c458893a5731"
#: The newest version the module proxy serves (v0.86.0 and later answer 403 here); it declares
#: go 1.24.0 and builds with the machine's Go 1.26 in its own wrapper module (its client-go
#: v0.33 talks to our v1.36 API server within the supported skew of a client).
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
#: Prometheus in the cluster: v3.5.0 (an LTS, the newest in the operator's compatibility matrix),
#: built from its Go module, published as github.com/prometheus/prometheus v0.305.0 (v3.X.Y is
#: v0.3XX.Y). Debian's package (2.42) cannot serve: it is built without Kubernetes service
#: discovery (`kubernetes_sd_configs` is an unknown field to it and to its promtool).
PROMETHEUS_VERSION = "v3.5.0"
PROMETHEUS_MODULE_VERSION = "v0.305.0"
#: KEDA (event-driven autoscaling: the operator and its external-metrics API server): the newest
#: release whose go.mod fits the machine's Go (v2.21.x declares go 1.27.4; v2.20.2 declares
#: go 1.26.0). Its go.mod pins k8s.io at v0.35 and controller-runtime by `replace`: the wrapper
#: module copies them (a v0.35 client talks to our v1.36 API server within the supported skew).
KEDA_VERSION = "v2.20.2"

_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first `[v]X.Y.Z` in `text` (e.g. `--version` output), or None."""
    match = _SEMVER.search(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def version_fits(found: str, pinned: str) -> bool:
    """A binary found on the machine fits when its major.minor equals the pinned one's."""
    have, want = parse_version(found), parse_version(pinned)
    return have is not None and want is not None and have[:2] == want[:2]


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y publishes its staging modules (k8s.io/api, ...) as v0.X.Y."""
    parsed = parse_version(kubernetes_version)
    if parsed is None or parsed[0] != 1:
        raise ValueError(f"not a Kubernetes 1.x version: {kubernetes_version!r}")
    return f"v0.{parsed[1]}.{parsed[2]}"


def kubernetes_ldflags(version: str) -> list[str]:
    """`-X` flags that make `--version` and `/version` report `version` (as hack/lib/version.sh)."""
    parsed = parse_version(version)
    if parsed is None:
        raise ValueError(f"not a version: {version!r}")
    values = {
        "gitVersion": version,
        "gitMajor": str(parsed[0]),
        "gitMinor": str(parsed[1]),
        "gitTreeState": "clean",
    }
    return [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    ]


def prometheus_ldflags(version: str) -> list[str]:
    """`-X` flags of Prometheus-style builds (prometheus/common's version package, as promu)."""
    return [
        f"-X github.com/prometheus/common/version.Version={version.lstrip('v')}",
        "-X github.com/prometheus/common/version.Branch=HEAD",
        "-X github.com/prometheus/common/version.BuildUser=localcluster",
    ]


@dataclass(frozen=True)
class Component:
    """One Go module built in a throwaway module of its own."""

    name: str
    module: str
    version: str
    #: binary name -> Go main package inside `module`
    binaries: dict[str, str]
    #: None: `module` has no replace/exclude directives. Otherwise the wrapper module copies them
    #: (gomod.wrapper_edits), pointing local replaces at their published twins of this version.
    replace_version: str | None = None
    ldflags: list[str] = field(default_factory=list)
    #: arguments that make the binary print its version
    version_args: tuple[str, ...] = ("--version",)


COMPONENTS: tuple[Component, ...] = (
    Component(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        binaries={
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in (
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
            )
        },
        replace_version=staging_version(KUBERNETES_VERSION),
        ldflags=kubernetes_ldflags(KUBERNETES_VERSION),
    ),
    Component(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
        replace_version=ETCD_VERSION,
    ),
    Component(
        name="kwok",
        module="sigs.k8s.io/kwok",
        version=KWOK_VERSION,
        binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        ldflags=[f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}"],
    ),
    Component(
        name="helm",
        module="helm.sh/helm/v3",
        version=HELM_VERSION,
        binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
        ldflags=[f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"],
        version_args=("version", "--short"),
    ),
    Component(
        name="coredns",
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        binaries={"coredns": "github.com/coredns/coredns"},
        version_args=("-version",),
    ),
    Component(
        name="metrics-server",
        module="sigs.k8s.io/metrics-server",
        version=METRICS_SERVER_VERSION,
        binaries={"metrics-server": "sigs.k8s.io/metrics-server/cmd/metrics-server"},
        ldflags=[f"-X k8s.io/client-go/pkg/version.gitVersion={METRICS_SERVER_VERSION}"],
    ),
    Component(
        name="seaweedfs",
        module="github.com/seaweedfs/seaweedfs",
        version=SEAWEEDFS_VERSION,
        binaries={"weed": "github.com/seaweedfs/seaweedfs/weed"},
        version_args=("version",),
    ),
    Component(
        name="dashboard-linter",
        module="github.com/grafana/dashboard-linter",
        version=DASHBOARD_LINTER_VERSION,
        binaries={"dashboard-linter": "github.com/grafana/dashboard-linter"},
        # No version command: one on PATH never "fits", the one built here is used.
        version_args=("rules",),
    ),
    Component(
        name="prometheus-operator",
        module="github.com/prometheus-operator/prometheus-operator",
        version=PROMETHEUS_OPERATOR_VERSION,
        # Named after the project in the cache and on PATH (upstream's image calls it `operator`).
        binaries={
            "prometheus-operator": (
                "github.com/prometheus-operator/prometheus-operator/cmd/operator"
            ),
            "prometheus-config-reloader": (
                "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
            ),
        },
        # Its local replaces are its own sub-modules (pkg/apis/monitoring, pkg/client), released
        # with the same version.
        replace_version=PROMETHEUS_OPERATOR_VERSION,
        ldflags=prometheus_ldflags(PROMETHEUS_OPERATOR_VERSION),
    ),
    Component(
        name="prometheus",
        module="github.com/prometheus/prometheus",
        version=PROMETHEUS_MODULE_VERSION,
        binaries={"prometheus": "github.com/prometheus/prometheus/cmd/prometheus"},
        # No local replaces; the wrapper copies its fsnotify pin and its excludes. (A Prometheus
        # on PATH reports 3.x, never the module's v0.305: the cached build is always used.)
        replace_version=PROMETHEUS_MODULE_VERSION,
        ldflags=prometheus_ldflags(PROMETHEUS_VERSION),
    ),
    Component(
        name="keda",
        module="github.com/kedacore/keda/v2",
        version=KEDA_VERSION,
        # The operator and the external-metrics API server; the admission webhooks
        # (cmd/webhooks) are not built: they only refuse invalid ScaledObjects, which the vod
        # operator never renders (kedamanifests.py says more).
        binaries={
            "keda-operator": "github.com/kedacore/keda/v2/cmd/operator",
            "keda-adapter": "github.com/kedacore/keda/v2/cmd/adapter",
        },
        # No local replaces: its pins of k8s.io, controller-runtime, cel-go and the Prometheus
        # libraries are copied as they are.
        replace_version=KEDA_VERSION,
        ldflags=[
            f"-X github.com/kedacore/keda/v2/version.Version={KEDA_VERSION.lstrip('v')}",
            "-X github.com/kedacore/keda/v2/version.GitCommit=localcluster",
        ],
        # No version command (it logs its version at start): one on PATH never "fits".
        version_args=("--help",),
    ),
)


def component_of(binary: str) -> Component:
    """The component that builds `binary` (e.g. `kube-apiserver` -> kubernetes)."""
    for component in COMPONENTS:
        if binary in component.binaries:
            return component
    raise KeyError(f"unknown binary {binary!r}")


ALL_BINARIES: tuple[str, ...] = tuple(b for c in COMPONENTS for b in c.binaries)
#: What the real node runs beside containerd (from Debian).
NODE_BINARIES: tuple[str, ...] = ("kubelet", "kube-proxy", "coredns", "metrics-server")
#: What the tests start beside the cluster: SeaweedFS, the S3-compatible server (s3server.py).
TEST_BINARIES: tuple[str, ...] = ("weed",)
#: What `make lint` and delivery use, never the cluster: helm, the dashboards' linter.
DELIVERY_BINARIES: tuple[str, ...] = ("helm", "dashboard-linter")
#: The monitoring stack, run in-cluster from local images on demand (monitoring.py).
MONITORING_BINARIES: tuple[str, ...] = (
    "prometheus-operator",
    "prometheus-config-reloader",
    "prometheus",
)
#: KEDA, run in-cluster from local images when a test needs it (monitoring.py).
KEDA_BINARIES: tuple[str, ...] = ("keda-operator", "keda-adapter")
#: What `up` runs without a real node.
CONTROL_PLANE_BINARIES: tuple[str, ...] = tuple(
    b
    for b in ALL_BINARIES
    if b
    not in (
        *DELIVERY_BINARIES,
        *NODE_BINARIES,
        *TEST_BINARIES,
        *MONITORING_BINARIES,
        *KEDA_BINARIES,
    )
)
