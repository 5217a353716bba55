"""localcluster's builder: pinned versions, version checks, go.mod replace handling."""

from __future__ import annotations

import pytest

from localcluster.build import go_env, go_version_problem
from localcluster.gomod import local_replacements, replace_args
from localcluster.versions import (
    ALL_BINARIES,
    COMPONENTS,
    CONTROL_PLANE_BINARIES,
    KUBERNETES_VERSION,
    component_of,
    kubernetes_ldflags,
    parse_version,
    staging_version,
    version_fits,
)

pytestmark = pytest.mark.unit

# Shapes as `go mod edit -json` prints them for k8s.io/kubernetes and etcd's server module.
KUBERNETES_MOD = {
    "Module": {"Path": "k8s.io/kubernetes"},
    "Require": [
        {"Path": "github.com/spf13/cobra", "Version": "v1.8.1"},
        {"Path": "k8s.io/api", "Version": "v0.0.0"},
        {"Path": "k8s.io/apiserver", "Version": "v0.0.0"},
        {"Path": "k8s.io/client-go", "Version": "v0.0.0"},
    ],
    "Replace": [
        {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}},
        {"Old": {"Path": "k8s.io/apiserver"}, "New": {"Path": "./staging/src/k8s.io/apiserver"}},
        {"Old": {"Path": "k8s.io/client-go"}, "New": {"Path": "./staging/src/k8s.io/client-go"}},
        {
            "Old": {"Path": "github.com/example/pinned"},
            "New": {"Path": "github.com/example/fork", "Version": "v1.2.3"},
        },
    ],
}
ETCD_MOD = {
    "Module": {"Path": "go.etcd.io/etcd/server/v3"},
    "Require": [
        {"Path": "go.etcd.io/etcd/api/v3", "Version": "v3.6.16"},
        {"Path": "go.etcd.io/etcd/client/v3", "Version": "v3.6.16"},
    ],
    "Replace": [
        {"Old": {"Path": "go.etcd.io/etcd/api/v3"}, "New": {"Path": "../api"}},
        {"Old": {"Path": "go.etcd.io/etcd/client/v3"}, "New": {"Path": "../client/v3"}},
        {"Old": {"Path": "go.etcd.io/etcd"}, "New": {"Path": "./FORBIDDEN_DEPENDENCY"}},
    ],
}


def test_staging_modules_are_the_required_local_replaces() -> None:
    assert local_replacements(KUBERNETES_MOD) == [
        "k8s.io/api",
        "k8s.io/apiserver",
        "k8s.io/client-go",
    ]


def test_guard_replaces_of_modules_not_required_are_left_out() -> None:
    assert local_replacements(ETCD_MOD) == ["go.etcd.io/etcd/api/v3", "go.etcd.io/etcd/client/v3"]


def test_a_go_mod_without_replaces_needs_none() -> None:
    assert local_replacements({"Module": {"Path": "sigs.k8s.io/kwok"}, "Require": None}) == []


def test_replace_args_point_each_module_at_its_twin() -> None:
    assert replace_args(["k8s.io/api", "k8s.io/client-go"], "v0.33.13") == [
        "-replace=k8s.io/api=k8s.io/api@v0.33.13",
        "-replace=k8s.io/client-go=k8s.io/client-go@v0.33.13",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kubernetes v1.33.13", (1, 33, 13)),
        ("etcd Version: 3.6.16\nGit SHA: abc\nGo Version: go1.26.8", (3, 6, 16)),
        ("kwok version v0.8.0 go1.26.8 (linux/amd64)", (0, 8, 0)),
        ("v3.21.4+g1234abc", (3, 21, 4)),
        ("Kubernetes v0.0.0-master+$Format:%H$", (0, 0, 0)),
        ("no version here", None),
    ],
)
def test_parse_version_reads_version_output(
    text: str, expected: tuple[int, int, int] | None
) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("found", "fits"),
    [
        ("Kubernetes v1.36.3", True),
        ("Kubernetes v1.36.0", True),
        ("Kubernetes v1.35.4", False),
        ("Kubernetes v1.37.2", False),
        ("Kubernetes v0.0.0-master+$Format:%H$", False),
        ("", False),
    ],
)
def test_an_external_binary_fits_on_the_same_minor(found: str, fits: bool) -> None:
    assert version_fits(found, KUBERNETES_VERSION) is fits


def test_staging_modules_are_published_as_v0_minor_patch() -> None:
    assert staging_version("v1.33.13") == "v0.33.13"
    with pytest.raises(ValueError, match=r"not a Kubernetes 1\.x version"):
        staging_version("v3.6.16")


def test_kubernetes_ldflags_make_version_honest() -> None:
    flags = kubernetes_ldflags("v1.33.13")
    assert "-X k8s.io/component-base/version.gitVersion=v1.33.13" in flags
    assert "-X k8s.io/component-base/version.gitMinor=33" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMajor=1" in flags


def test_every_binary_belongs_to_exactly_one_pinned_component() -> None:
    assert sorted(ALL_BINARIES) == sorted(
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "etcd",
            "kwok",
            "helm",
            "coredns",
            "metrics-server",
            "weed",
            "dashboard-linter",
            "prometheus-operator",
            "prometheus-config-reloader",
            "prometheus",
            "keda-operator",
            "keda-adapter",
        ]
    )
    assert component_of("kubelet").version == KUBERNETES_VERSION
    assert component_of("coredns").module == "github.com/coredns/coredns"
    assert component_of("kube-scheduler").version == KUBERNETES_VERSION
    assert component_of("etcd").module == "go.etcd.io/etcd/server/v3"
    assert "helm" not in CONTROL_PLANE_BINARIES
    assert "weed" not in CONTROL_PLANE_BINARIES  # a test server, not part of the cluster
    assert "dashboard-linter" not in CONTROL_PLANE_BINARIES  # `make lint` uses it
    assert component_of("dashboard-linter").module == "github.com/grafana/dashboard-linter"
    assert component_of("weed").module == "github.com/seaweedfs/seaweedfs"
    assert len({c.name for c in COMPONENTS}) == len(COMPONENTS)
    with pytest.raises(KeyError):
        component_of("kubeadm")


@pytest.mark.parametrize(
    ("output", "fits"),
    [("go1.26.8\n", True), ("go1.27rc1", True), ("go1.24.3", False), (None, False), ("", False)],
)
def test_go_version_is_checked_before_building(output: str | None, fits: bool) -> None:
    problem = go_version_problem(output)
    assert (problem is None) is fits, problem


def test_go_never_fetches_a_toolchain() -> None:
    env = go_env()
    assert env["GOTOOLCHAIN"] == "local"
    assert env["CGO_ENABLED"] == "0"
