"""The install manifests: least-privilege RBAC, a restricted operator Deployment, CRDs from crds/,
and a Helm chart that installs the same objects as kustomize."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from urllib.parse import urlparse

import dockerfile  # type: ignore[import-not-found]  # no type stubs published
import pytest
import yaml

from tests.unit.delivery.rendered import granted, kustomize, needed, one
from tests.unit.operator import crdschema
from vod_delivery import project
from vod_operator import kube
from vod_operator.__main__ import parse_args
from vod_operator.autoscaling import MetricsApis
from vod_operator.options import Options
from vod_operator.render import RenderInputs, render

pytestmark = pytest.mark.unit

OVERLAYS = sorted(p.name for p in (project.MANIFESTS_DIR / "overlays").iterdir())


#: What every overlay installs.
INSTALL = [
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "CustomResourceDefinition",
    "Deployment",
    "Namespace",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "ServiceAccount",
]
#: What components/monitoring adds (overlays/monitoring has it).
MONITORING = ["Service", "ServiceMonitor", "PrometheusRule", "ConfigMap", "ConfigMap"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_object(overlay: str) -> None:
    kinds = sorted(d["kind"] for d in kustomize(overlay))
    assert kinds == sorted(INSTALL + (MONITORING if overlay == "monitoring" else []))


def test_rbac_grants_exactly_what_the_operator_uses() -> None:
    role = one(kustomize(), "ClusterRole")
    assert granted(role["rules"]) == needed()


def test_operator_permissions_cover_every_kind_it_renders_and_watches() -> None:
    resources = {(g, r) for g, r, _ in needed()}
    for kind in kube.APPLIED_KINDS.values():
        assert (kind.group, kind.plural) in resources
    for kind in (kube.VIDEOPLATFORM, kube.VIDEOASSET, kube.POD):
        assert (kind.group, kind.plural) in resources


def test_operator_renders_exactly_the_child_kinds_it_watches_and_may_write() -> None:
    """The full example (every feature on, monitoring API present) renders each child kind:
    the ScaledObject with KEDA installed, the HorizontalPodAutoscaler without."""
    rendered: set[str] = set()
    for apis in (MetricsApis(keda=True), MetricsApis()):
        inputs = RenderInputs(
            signing_keys={"k": "a2V5"}, monitoring_available=True, metrics_apis=apis
        )
        rendered |= {m["kind"] for m in render(crdschema.example_platform("showcase"), inputs)}
    assert rendered == set(kube.CHILD_KINDS)


def test_every_permission_has_a_reason() -> None:
    """Nothing beyond the children, both custom resources, the packaging pods' log and
    termination message, Events and kopf's two scans."""
    children = {(kind.group, kind.plural) for kind in kube.APPLIED_KINDS.values()}
    platform = {
        (kind.group, f"{kind.plural}{sub}")
        for kind in (kube.VIDEOPLATFORM, kube.VIDEOASSET)
        for sub in ("", "/status", "/finalizers")
    }
    extras = {
        ("", "pods"),
        ("", "pods/log"),
        ("", "events"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "namespaces"),
    }
    assert {(g, r) for g, r, _ in kube.PERMISSIONS} == children | platform | extras
    child_verbs = {verbs for g, r, verbs in kube.PERMISSIONS if (g, r) in children}
    assert child_verbs == {kube.CHILD_VERBS}
    # Pods are only read (list + log), never written; VideoAssets only get finalizers patched.
    verbs = {(g, r): set(v) for g, r, v in kube.PERMISSIONS}
    assert verbs[("", "pods")] == {"list"}
    assert verbs[("", "pods/log")] == {"get"}
    assert verbs[(kube.VIDEOASSET.group, kube.VIDEOASSET.plural)] == {
        "get",
        "list",
        "watch",
        "patch",
    }


def test_binding_ties_the_role_to_the_operator_service_account() -> None:
    docs = kustomize()
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    deployment = one(docs, "Deployment")
    assert binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    )


def test_the_lease_role_grants_exactly_the_election_in_the_operators_namespace() -> None:
    docs = kustomize()
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    account = one(docs, "ServiceAccount")
    namespace = account["metadata"]["namespace"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert granted(role["rules"]) == {
        (g, r, v) for g, r, verbs in kube.LEASE_PERMISSIONS for v in verbs
    }
    assert granted(role["rules"]) == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    }
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]
    # Nothing cluster-wide about Leases.
    cluster_role = one(docs, "ClusterRole")
    assert not [t for t in granted(cluster_role["rules"]) if t[1] == "leases"]


def test_two_replicas_elect_a_leader_roll_one_at_a_time_and_spread() -> None:
    docs = kustomize()
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # What the operator makes of that environment in the pod.
    namespace = deployment["metadata"]["namespace"]
    in_pod = {name: e.get("value", "") for name, e in env.items() if "value" in e} | {
        "POD_NAMESPACE": namespace,
        "POD_NAME": "vod-operator-abc",
        "KUBERNETES_SERVICE_HOST": "x",
    }
    options = Options.from_env(in_pod)
    assert options.leader_election
    assert options.leader_election_namespace == namespace
    assert options.leader_election_name == "vod-operator"

    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["metadata"]["namespace"] == namespace


def test_crds_are_installed_from_crds_folder_unchanged() -> None:
    installed = sorted(
        (d for d in kustomize() if d["kind"] == "CustomResourceDefinition"),
        key=lambda d: d["metadata"]["name"],
    )
    sources = [yaml.safe_load(path.read_text()) for path in project.crd_files()]
    assert [d["metadata"]["name"] for d in sources] == [
        "videoassets.videoplatform.io",
        "videoplatforms.videoplatform.io",
    ]
    assert installed == sources


def test_deployment_probes_kopf_liveness_and_is_restricted() -> None:
    deployment = one(kustomize(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    liveness = urlparse(parse_args([]).liveness)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == liveness.path
        assert ports[get["port"]] == liveness.port
    assert container["image"] == f"ghcr.io/vod-operator/vod-operator:{project.version()}"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_namespace_enforces_restricted_pod_security() -> None:
    namespace = one(kustomize(), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in kustomize():
        if doc["kind"] in {"ServiceAccount", "Deployment"}:
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]


def test_kind_overlay_never_pulls() -> None:
    pod = one(kustomize("kind"), "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["imagePullPolicy"] == "Never"


def operator_image_stage() -> list[dockerfile.Command]:
    """The final stage of operator/Dockerfile, parsed by the BuildKit parser."""
    commands = dockerfile.parse_file(str(project.ROOT / "operator" / "Dockerfile"))
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return list(commands[last_from:])


def test_dockerfile_is_non_root_and_exec_form() -> None:
    by_cmd = {c.cmd: c for c in operator_image_stage()}
    user = by_cmd["USER"].value[0].split(":")[0]
    assert user.isdigit()
    assert user != "0"
    assert by_cmd["ENTRYPOINT"].json  # exec form: SIGTERM reaches kopf, not a shell
    assert "8081" in by_cmd["EXPOSE"].value  # kopf's liveness port, probed by the Deployment
    text = (project.ROOT / "operator" / "Dockerfile").read_text()
    with (project.ROOT / "operator" / "pyproject.toml").open("rb") as fh:
        packages = tomllib.load(fh)["tool"]["setuptools"]["packages"]
    # the wheel build needs the distribution's pyproject.toml and every top-level package
    assert "COPY operator/pyproject.toml operator/" in text
    for top in {package.split(".")[0] for package in packages}:
        assert f"COPY operator/{top} operator/{top}" in text
    assert "vod_stream" not in text  # the operator image has no streaming server


def test_image_entrypoint_is_the_operator_command() -> None:
    """ENTRYPOINT, run here as written (python = this interpreter), is the operator's CLI."""
    entry = next(c for c in operator_image_stage() if c.cmd == "ENTRYPOINT").value
    assert list(entry[:3]) == ["python", "-m", "vod_operator"]
    result = subprocess.run(
        [sys.executable, *entry[1:], "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"vod-operator {project.version()}"
