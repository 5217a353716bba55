"""Installing the operator on a real API server: kustomize apply, RBAC as the API server sees it,
the operator Deployment becoming Ready (its image running on the real node), the in-cluster
operator reconciling a VideoPlatform with its least-privilege RBAC, and the chart accepted by a
server-side dry run."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster.binaries import helm_path
from localcluster.handle import KubeCluster
from localcluster.versions import KUBERNETES_VERSION
from tests.cluster.conftest import OperatorProcess, eventually
from vod_delivery import project
from vod_operator import kube

pytestmark = pytest.mark.cluster

NAMESPACE = "vod-operator-system"
ACCOUNT = f"system:serviceaccount:{NAMESPACE}:vod-operator"


@pytest.fixture(scope="module")
def installed(kube_cluster: Any, operator: OperatorProcess) -> Iterator[KubeCluster]:
    """`kubectl apply -k manifests/overlays/default`; afterwards everything but the shared CRD
    is removed (other tests in the session use the CRD). The session's own operator process
    pauses meanwhile, so the in-cluster one is the only operator.

    On a cluster where the operator is already deployed (`make deploy` before `make e2e-kind`)
    the install is checked as it is and left alone: the other scenarios need that operator.
    """
    cluster: KubeCluster = kube_cluster
    deployed = cluster.kubectl("-n", NAMESPACE, "get", "deployment/vod-operator", check=False)
    if deployed.returncode == 0:
        yield cluster
        return
    overlay = str(project.MANIFESTS_DIR / "overlays" / "default")
    operator.stop()
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", overlay)
        yield cluster
    finally:
        operator.start()
    # Wait for the cleanup, so later tests that count API writes do not see it.
    cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=120s", check=False)
    cluster.kubectl("delete", "clusterrolebinding,clusterrole", "vod-operator", check=False)


def get_json(cluster: KubeCluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


def test_operator_deployment_becomes_available(installed: KubeCluster) -> None:
    installed.kubectl(
        "-n", NAMESPACE, "wait", "--for=condition=Available", "deployment/vod-operator",
        "--timeout=180s",
    )  # fmt: skip
    deployment = get_json(installed, "-n", NAMESPACE, "deployment", "vod-operator")
    assert deployment["status"]["readyReplicas"] == 2  # the leader and a warm standby
    pods = get_json(installed, "-n", NAMESPACE, "pods", "-l", "app.kubernetes.io/name=vod-operator")
    assert len(pods["items"]) == 2
    for pod in pods["items"]:
        assert pod["spec"]["serviceAccountName"] == "vod-operator"
        assert pod["spec"]["containers"][0]["image"].endswith(f":{project.version()}")
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True
        assert "running" in status["state"]
    # One of them holds the Lease (identity: pod name + "_" + a uid).
    names = {pod["metadata"]["name"] for pod in pods["items"]}

    def holder() -> str:
        lease = installed.kubectl(
            "-n", NAMESPACE, "get", "lease", "vod-operator", "-o", "json", check=False
        )  # fmt: skip
        if lease.returncode != 0:
            return ""
        return str(json.loads(lease.stdout)["spec"].get("holderIdentity") or "")

    assert eventually(holder, timeout=30).rpartition("_")[0] in names


def test_in_cluster_operator_reconciles_a_platform(installed: KubeCluster) -> None:
    installed.kubectl(
        "-n", NAMESPACE, "wait", "--for=condition=Available", "deployment/vod-operator",
        "--timeout=180s",
    )  # fmt: skip
    ns = f"incluster-{uuid.uuid4().hex[:6]}"
    installed.kubectl("create", "namespace", ns)
    try:
        installed.kubectl(
            "-n", ns, "apply", "-f", "-",
            input=(
                "apiVersion: videoplatform.io/v1alpha1\nkind: VideoPlatform\n"
                "metadata: {name: solo}\nspec: {replicas: 1, storage: {emptyDir: {}}}\n"
            ),
        )  # fmt: skip
        installed.kubectl(
            "-n", ns, "wait", "--for=condition=Ready", "vp/solo", "--timeout=180s", timeout=200
        )
        vp = get_json(installed, "-n", ns, "vp", "solo")
        assert vp["status"]["readyReplicas"] == 1
        deployment = get_json(
            installed, "-n", ns, "deployment", "solo-stream", "--show-managed-fields"
        )
        (owner,) = deployment["metadata"]["ownerReferences"]
        assert owner["uid"] == vp["metadata"]["uid"]
        managers = {f["manager"] for f in deployment["metadata"]["managedFields"]}
        assert "vod-operator" in managers
    finally:
        installed.kubectl("delete", "namespace", ns, "--wait=false", check=False)


LEADER_STATUS = "leader_election_master_status"


def test_each_replica_reports_its_part_in_the_election(installed: KubeCluster) -> None:
    """Both replicas serve /metrics (through the API server's pod proxy, as on any cluster):
    the Lease holder reports leader_election_master_status 1 and the standby 0; both report
    their build and the controller-runtime series."""
    from prometheus_client.parser import text_string_to_metric_families

    installed.kubectl(
        "-n", NAMESPACE, "wait", "--for=condition=Available", "deployment/vod-operator",
        "--timeout=180s",
    )  # fmt: skip
    pods = get_json(installed, "-n", NAMESPACE, "pods", "-l", "app.kubernetes.io/name=vod-operator")
    names = sorted(pod["metadata"]["name"] for pod in pods["items"])

    def exposition(pod: str) -> str:
        return installed.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}:8080/proxy/metrics"
        ).stdout

    def scrape(pod: str) -> dict[str, float]:
        text = exposition(pod)
        return {
            sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def statuses() -> dict[str, float] | None:
        status = {}
        for pod in names:
            samples = scrape(pod)
            found = [v for k, v in samples.items() if k.startswith(LEADER_STATUS + "[")]
            if not found:
                return None
            status[pod] = found[0]
        return status if sorted(status.values()) == [0.0, 1.0] else None

    status = eventually(statuses, timeout=60)
    samples = scrape(names[0])
    assert any(k.startswith("vod_operator_build_info[") for k in samples)
    assert any(k.startswith("controller_runtime_reconcile_total[") for k in samples)
    assert any(k.startswith("workqueue_depth[") for k in samples)
    print(f"\n{LEADER_STATUS} by replica: {status}")
    shown = ("vod_operator_", "leader_", "controller_runtime_reconcile_total", "workqueue_depth")
    print("\n".join(line for line in exposition(names[0]).splitlines() if line.startswith(shown)))


def test_crd_is_established(installed: KubeCluster) -> None:
    installed.kubectl(
        "wait", "--for=condition=Established", "crd/videoplatforms.videoplatform.io",
        "crd/videoassets.videoplatform.io", "--timeout=60s",
    )  # fmt: skip


def can_i(
    kubectl: KubeCluster, verb: str, group: str, resource: str, namespace: str = "media"
) -> bool:
    """Ask the API server's authorizer (a SubjectAccessReview) as the operator's ServiceAccount.

    Unlike `kubectl auth can-i` this needs no discovery, so it also answers for API groups that
    are not installed (monitoring.coreos.com)."""
    plural, _, subresource = resource.partition("/")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": ACCOUNT,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{NAMESPACE}",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": plural,
                "subresource": subresource,
                "namespace": namespace,
            },
        },
    }
    out = kubectl.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def test_service_account_may_do_exactly_what_the_operator_does(installed: KubeCluster) -> None:
    for group, resource, verbs in kube.PERMISSIONS:
        for verb in verbs:
            assert can_i(installed, verb, group, resource), f"{verb} {resource}.{group}"
    for verb, group, resource in [
        ("delete", "apiextensions.k8s.io", "customresourcedefinitions"),
        ("update", "apps", "deployments"),  # server-side apply patches, never updates
        ("delete", "videoplatform.io", "videoplatforms"),
        ("delete", "videoplatform.io", "videoassets"),
        ("update", "videoplatform.io", "videoassets"),  # finalizers go by patch
        ("update", "batch", "jobs"),  # packaging Jobs are created, never rewritten
        ("create", "", "pods"),
        ("delete", "", "pods"),
        ("create", "", "pods/exec"),
        ("get", "", "nodes"),
        ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ]:
        assert not can_i(installed, verb, group, resource), f"{verb} {resource}.{group}"


def test_service_account_may_hold_the_lease_in_its_namespace_only(installed: KubeCluster) -> None:
    for group, resource, verbs in kube.LEASE_PERMISSIONS:
        for verb in verbs:
            assert can_i(installed, verb, group, resource, NAMESPACE), f"{verb} {resource}"
            assert not can_i(installed, verb, group, resource, "media"), f"{verb} {resource}"
        for verb in ("delete", "list", "watch", "patch"):
            assert not can_i(installed, verb, group, resource, NAMESPACE), f"{verb} {resource}"


def test_chart_is_accepted_by_server_side_dry_run(installed: KubeCluster) -> None:
    rendered = subprocess.run(
        [str(helm_path()), "template", "vod-operator", str(project.CHART_DIR),
         "--namespace", NAMESPACE, "--include-crds",
         "--kube-version", KUBERNETES_VERSION.lstrip("v")],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    result = installed.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts",
                           "-f", "-", input=rendered)  # fmt: skip
    applied = result.stdout
    for obj in (
        "deployment.apps/vod-operator",
        "role.rbac.authorization.k8s.io/vod-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/vod-operator-leader-election",
        "poddisruptionbudget.policy/vod-operator",
        "clusterrole.rbac.authorization.k8s.io/vod-operator",
        "serviceaccount/vod-operator",
        "customresourcedefinition.apiextensions.k8s.io/videoplatforms.videoplatform.io",
    ):
        assert obj in applied


def test_helm_install_dry_run_prints_next_steps(installed: KubeCluster) -> None:
    result = subprocess.run(
        [str(helm_path()), "install", "vod-operator-notes", str(project.CHART_DIR),
         "--namespace", NAMESPACE, "--dry-run=server", "--skip-crds"],
        capture_output=True, text=True, check=True, timeout=120, env=installed.env,
    )  # fmt: skip
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "rollout status deployment/vod-operator-notes" in notes
    assert "kubectl -n media wait --for=condition=Ready vp/demo" in notes
    assert "docs/reference.md" in notes
    # The VideoPlatform the notes suggest is accepted by the API server as written.
    manifest = notes.split("\n---\n")[1]
    accepted = installed.kubectl(
        "apply", "--dry-run=server", "-n", "default", "-f", "-", input=manifest
    ).stdout
    assert "videoplatform.videoplatform.io/demo created (server dry run)" in accepted
