"""The operator against a real API server, driven the way a user drives it: kubectl.

One control plane and one operator process serve the whole module; each test works in its
own namespace. kwok makes the streaming pods Running/Ready, so Ready is real.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import (
    OPERATOR_RESOURCES,
    Namespace,
    OperatorProcess,
    eventually,
    image_alias,
    write_counts,
)
from vod_operator import __version__

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def platform(name: str, spec: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ") if spec.strip() else ""
    return (
        "apiVersion: videoplatform.io/v1alpha1\nkind: VideoPlatform\n"
        f"metadata:\n  name: {name}\nspec:\n  storage:\n    emptyDir: {{}}\n{body}\n"
    )


def condition(vp: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in vp.get("status", {}).get("conditions", []) if c["type"] == kind]
    assert found, f"no {kind} condition in {vp.get('status')}"
    first: dict[str, Any] = found[0]
    return first


def wait_ready(ns: Namespace, name: str, timeout: int = 90) -> None:
    ns.kubectl("wait", "--for=condition=Ready", f"vp/{name}", f"--timeout={timeout}s")


def uid(ns: Namespace, kind: str, name: str) -> str:
    return str(ns.get(kind, name)["metadata"]["uid"])


# -- the examples, as a user applies them -------------------------------------------------


#: The local control plane has no volume provisioner: as a cluster admin would, offer a
#: volume the examples' PVC can bind to (unless a default StorageClass provisions one).
VIDEOS_PV = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: vod-test-videos}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/vod-test-videos}
  claimRef: {namespace: default, name: videos}
"""


def test_examples_apply_as_they_are_and_become_ready(
    operator: OperatorProcess, kube_cluster: Any
) -> None:
    classes = kube_cluster.kubectl("get", "storageclass", "-o", "name").stdout.strip()
    if not classes:
        kube_cluster.kubectl("apply", "-f", "-", input=VIDEOS_PV)
    kube_cluster.kubectl("apply", "-f", str(ROOT / "examples"))
    try:
        kube_cluster.kubectl(
            "wait", "--for=condition=Ready", "vp/demo", "vp/showcase", "--timeout=120s"
        )
        table = kube_cluster.kubectl("get", "vp").stdout.splitlines()
        assert table[0].split() == [
            "NAME", "READY", "PHASE", "REPLICAS", "ENDPOINT", "ASSETS", "AGE",
        ]  # fmt: skip
        rows = {line.split()[0]: line.split() for line in table[1:]}
        assert rows["demo"][1:6] == [
            "True",
            "Ready",
            "2",
            "http://demo-stream.default.svc:8080",
            "0",
        ]
        assert rows["showcase"][1:3] == ["True", "Ready"]
        kinds = kube_cluster.kubectl(
            "get",
            "configmap,secret,deployment,service,hpa,pdb,ingress",
            "-l",
            "app.kubernetes.io/instance=showcase",
            "-o",
            "name",
        ).stdout.split()
        assert sorted(k.split("/")[0] for k in kinds) == sorted(
            [
                "configmap",
                "secret",
                "deployment.apps",
                "service",
                "horizontalpodautoscaler.autoscaling",
                "poddisruptionbudget.policy",
                "ingress.networking.k8s.io",
            ]
        )
        vp = json.loads(kube_cluster.kubectl("get", "vp", "showcase", "-o", "json").stdout)
        assert condition(vp, "Monitoring")["reason"] == "MonitoringCRDsNotInstalled"
    finally:
        kube_cluster.kubectl("delete", "-f", str(ROOT / "examples"), "--ignore-not-found")
        kube_cluster.kubectl("delete", "pv", "vod-test-videos", "--ignore-not-found")


def test_explain_teaches_the_fields(crd_installed: Any) -> None:
    text = crd_installed.kubectl("explain", "vp.spec.autoscaling").stdout
    for field in (
        "minReplicas",
        "maxReplicas",
        "targetCPUUtilizationPercentage",
        "targetInFlightRequestsPerPod",
        "targetEgressBytesPerSecondPerPod",
        "behavior",
        "prometheus",
        "enabled",
    ):
        assert field in text
    assert "HorizontalPodAutoscaler" in text
    assert (
        "Lower bound" in crd_installed.kubectl("explain", "vp.spec.autoscaling.minReplicas").stdout
    )


# -- validation at the door ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            "autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}",
            "spec.autoscaling.minReplicas",
        ),
        ("cache: {enabled: false, size: '0'}", "spec.cache.size"),
        ("cache: {enabled: true}", "spec.cache.enabled"),
        ("cache: {sliceSize: 100Mi}", "spec.cache.sliceSize"),
        ("replicas: -1", "spec.replicas"),
        (
            "transcoding:\n  enabled: true\n  renditions:\n"
            "    - {name: hd, height: 720, videoBitrate: 3000k}\n"
            "    - {name: hd, height: 480, videoBitrate: 1000k}",
            "spec.transcoding.renditions",
        ),
        (
            "transcoding:\n  enabled: true\n  renditions:\n"
            "    - {name: hd, height: 720, videoBitrate: 3000k}\n"
            "    - {name: hd-low, height: 720, videoBitrate: 1000k}",
            "rendition heights must be unique",
        ),
        ("transcoding: {renditions: []}", "spec.transcoding.renditions"),
        (
            "security: {signedUrls: {enabled: true, secretName: mine}}",
            "spec.security.signedUrls.activeKeyId",
        ),
        (
            "autoscaling: {enabled: true, targetCPUUtilizationPercentage: 0}",
            "enabled autoscaling needs at least one target",
        ),
        (
            "autoscaling: {enabled: true, targetEgressBytesPerSecondPerPod: '2048.5'}",
            "targetEgressBytesPerSecondPerPod must be a whole number",
        ),
        (
            "autoscaling: {enabled: true, targetEgressBytesPerSecondPerPod: lots}",
            "targetEgressBytesPerSecondPerPod must be a whole number",
        ),
        (
            "autoscaling: {enabled: true, prometheus: {serverAddress: 'prometheus:9090'}}",
            "prometheus.serverAddress must be an http:// or https:// URL",
        ),
        (
            "autoscaling:\n  enabled: true\n  behavior:\n    scaleDown:\n"
            "      policies: [{type: Pods, value: 1, periodSeconds: 3600}]",
            "spec.autoscaling.behavior.scaleDown.policies[0].periodSeconds",
        ),
    ],
    ids=[
        "min-gt-max",
        "cache-zero",
        "cache-local-origin",
        "cache-slice-too-big",
        "negative-replicas",
        "duplicate-rendition-name",
        "duplicate-rendition-height",
        "no-renditions",
        "key-id",
        "autoscaling-no-target",
        "egress-fraction",
        "egress-not-a-quantity",
        "prometheus-address",
        "scale-down-period",
    ],
)
def test_invalid_specs_are_refused_naming_the_field(
    namespace: Namespace, spec: str, field: str
) -> None:
    result = namespace.kubectl("apply", "-f", "-", input=platform("bad", spec), check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr


def test_no_storage_origin_is_refused(namespace: Namespace) -> None:
    body = (
        platform("bad", "")
        .replace("    emptyDir: {}\n", "    {}\n")
        .replace("  storage:\n    {}\n", "  storage: {}\n")
    )
    assert "storage: {}" in body
    result = namespace.kubectl("apply", "-f", "-", input=body, check=False)
    assert result.returncode != 0
    assert "spec.storage" in result.stderr
    assert "exactly one storage origin" in result.stderr


@pytest.mark.parametrize(
    "second",
    ["pvc: {claimName: videos}", "s3: {endpoint: 'http://s3:8333', bucket: videos}"],
    ids=["pvc", "s3"],
)
def test_two_storage_origins_are_refused(namespace: Namespace, second: str) -> None:
    body = platform("bad", "").replace("    emptyDir: {}\n", f"    emptyDir: {{}}\n    {second}\n")
    result = namespace.kubectl("apply", "-f", "-", input=body, check=False)
    assert result.returncode != 0
    assert "spec.storage" in result.stderr
    assert "exactly one storage origin" in result.stderr


@pytest.mark.parametrize(
    ("origin", "field"),
    [
        ("s3: {endpoint: 'ftp://s3:21', bucket: videos}", "spec.storage.s3.endpoint"),
        ("s3: {endpoint: 'http://s3:8333', bucket: Videos_1}", "spec.storage.s3.bucket"),
        ("s3: {endpoint: 'http://s3:8333', bucket: vids, prefix: ../x}", "spec.storage.s3.prefix"),
        ("s3: {endpoint: 'http://s3:8333'}", "spec.storage.s3.bucket"),
        ("http: {url: 'origin.example.com'}", "spec.storage.http.url"),
    ],
    ids=["endpoint-scheme", "bucket-name", "prefix-escape", "bucket-missing", "http-url"],
)
def test_invalid_remote_origins_are_refused_naming_the_field(
    namespace: Namespace, origin: str, field: str
) -> None:
    body = platform("bad", "").replace("    emptyDir: {}\n", f"    {origin}\n")
    result = namespace.kubectl("apply", "-f", "-", input=body, check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr


# -- the spec drives the children ---------------------------------------------------------


@pytest.mark.local_control_plane  # the new image must exist on the node: image_alias
def test_children_follow_spec_edits(namespace: Namespace, kube_cluster: Any) -> None:
    ns = namespace
    new_image = image_alias(kube_cluster)
    ns.apply(platform("web"))
    wait_ready(ns, "web")
    dep = ns.get("deployment", "web-stream")
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "VideoPlatform"

    ready_since = condition(ns.get("vp", "web"), "Ready")["lastTransitionTime"]

    # kubectl scale through the scale subresource
    ns.kubectl("scale", "vp/web", "--replicas=3")
    eventually(lambda: ns.get("deployment", "web-stream")["spec"]["replicas"] == 3)
    eventually(lambda: ns.get("vp", "web")["status"]["readyReplicas"] == 3, timeout=60)

    # a new image rolls the Deployment
    ns.kubectl("patch", "vp/web", "--type=merge", "-p", json.dumps({"spec": {"image": new_image}}))
    eventually(
        lambda: (
            ns.get("deployment", "web-stream")["spec"]["template"]["spec"]["containers"][0]["image"]
            == new_image
        )
    )
    eventually(
        lambda: condition(ns.get("vp", "web"), "Progressing")["reason"] == "RolloutComplete",
        timeout=60,
    )
    # Serving all along: scaling up and rolling out never cleared Ready.
    ready = condition(ns.get("vp", "web"), "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", ready_since)

    # autoscaling on: an HPA appears and owns the replica count
    ns.kubectl(
        "patch", "vp/web", "--type=merge", "-p",
        '{"spec":{"autoscaling":{"enabled":true,"minReplicas":2,"maxReplicas":4}}}',
    )  # fmt: skip
    eventually(lambda: ns.exists("hpa", "web-stream"))
    hpa = ns.get("hpa", "web-stream")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)

    def replicas_released() -> bool:
        out = ns.kubectl("get", "deployment/web-stream", "-o", "json", "--show-managed-fields")
        managed = json.loads(out.stdout)["metadata"]["managedFields"]
        ours = [m for m in managed if m["manager"] == "vod-operator" and m["operation"] == "Apply"]
        return bool(ours) and "f:replicas" not in ours[0]["fieldsV1"]["f:spec"]

    eventually(replicas_released)
    assert ns.get("deployment", "web-stream")["spec"]["replicas"] >= 2  # never dropped to 1

    # autoscaling off: the HPA goes and spec.replicas applies again
    ns.kubectl(
        "patch", "vp/web", "--type=merge", "-p",
        '{"spec":{"autoscaling":{"enabled":false},"replicas":1}}',
    )  # fmt: skip
    eventually(lambda: not ns.exists("hpa", "web-stream"))
    eventually(lambda: ns.get("deployment", "web-stream")["spec"]["replicas"] == 1)

    # ingress on, then off
    ns.kubectl(
        "patch", "vp/web", "--type=merge", "-p",
        '{"spec":{"ingress":{"enabled":true,"host":"web.example.com"}}}',
    )  # fmt: skip
    eventually(lambda: ns.exists("ingress", "web-stream"))
    assert ns.get("ingress", "web-stream")["spec"]["rules"][0]["host"] == "web.example.com"
    ns.kubectl("patch", "vp/web", "--type=merge", "-p", '{"spec":{"ingress":{"enabled":false}}}')
    eventually(lambda: not ns.exists("ingress", "web-stream"))

    # status reflects the latest generation
    vp = ns.get("vp", "web")
    eventually(
        lambda: ns.get("vp", "web")["status"]["observedGeneration"] == vp["metadata"]["generation"]
    )


def test_an_autoscaled_platform_starts_at_its_floor(namespace: Namespace) -> None:
    """Created at minReplicas (not 1, then raised by the HPA); the count is the HPA's after."""
    ns = namespace
    ns.apply(platform("floor", "autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 5}"))
    wait_ready(ns, "floor")  # serving: one pod ready is enough (see status.py)
    eventually(lambda: ns.get("vp", "floor")["status"].get("readyReplicas") == 3, timeout=60)

    def scalings() -> list[str]:
        out = ns.kubectl(
            "get", "events", "-o", "json", "--field-selector",
            "involvedObject.kind=Deployment,involvedObject.name=floor-stream,"
            "reason=ScalingReplicaSet",
        ).stdout  # fmt: skip
        return [e["message"] for e in json.loads(out)["items"]]

    (scaled,) = eventually(scalings)
    assert scaled.endswith("from 0 to 3"), scaled  # the first and only scale-up: to the floor
    out = ns.kubectl("get", "deployment/floor-stream", "-o", "json", "--show-managed-fields")
    managed = json.loads(out.stdout)["metadata"]["managedFields"]
    ours = [m for m in managed if m["manager"] == "vod-operator" and m["operation"] == "Apply"]
    assert "f:replicas" not in ours[0]["fieldsV1"]["f:spec"]  # the HPA's from the start


WITH_EXTRAS = """
resources: {requests: {cpu: 100m}, limits: {cpu: '2', memory: 512Mi}}
security:
  cors: {allowedOrigins: ['https://app.example.com']}
  jwt: {secretName: jwt-key}
ingress:
  enabled: true
  host: videos.example.com
  className: nginx
  tlsSecretName: videos-tls
  annotations: {example.com/proxy-body-size: '0'}
"""
WITHOUT_EXTRAS = """
resources: {requests: {cpu: 100m}, limits: {memory: 512Mi}}
ingress: {enabled: true, host: videos.example.com}
"""


def test_fields_removed_from_the_spec_leave_the_children(namespace: Namespace) -> None:
    ns = namespace
    ns.apply(platform("trim", WITH_EXTRAS))

    def config() -> dict[str, str]:
        data: dict[str, str] = ns.get("configmap", "trim-stream-config")["data"]
        return data

    def pod() -> dict[str, Any]:
        spec: dict[str, Any] = ns.get("deployment", "trim-stream")["spec"]["template"]["spec"]
        return spec

    eventually(lambda: ns.exists("ingress", "trim-stream"))
    assert config()["VOD_CORS_ALLOWED_ORIGINS"] == "https://app.example.com"
    assert config()["VOD_JWT_SECRET_FILE"] == "/etc/vod/jwt/key"
    assert "jwt" in {v["name"] for v in pod()["volumes"]}
    ingress = ns.get("ingress", "trim-stream")
    assert ingress["metadata"]["annotations"]["example.com/proxy-body-size"] == "0"
    assert ingress["spec"]["ingressClassName"] == "nginx"

    ns.apply(platform("trim", WITHOUT_EXTRAS))  # kubectl apply drops the removed fields

    eventually(lambda: "VOD_CORS_ALLOWED_ORIGINS" not in config())
    assert "VOD_JWT_SECRET_FILE" not in config()
    eventually(lambda: "jwt" not in {v["name"] for v in pod()["volumes"]})
    container = pod()["containers"][0]
    assert "jwt" not in {m["name"] for m in container["volumeMounts"]}
    assert container["resources"]["limits"] == {"memory": "512Mi"}

    def ingress_trimmed() -> bool:
        ing = ns.get("ingress", "trim-stream")
        return (
            "example.com/proxy-body-size" not in ing["metadata"].get("annotations", {})
            and "ingressClassName" not in ing["spec"]
            and "tls" not in ing["spec"]
        )

    eventually(ingress_trimmed)
    wait_ready(ns, "trim")


def test_signing_key_is_generated_once_and_kept(namespace: Namespace) -> None:
    ns = namespace
    ns.apply(platform("sig", "security: {signedUrls: {enabled: true}}"))
    wait_ready(ns, "sig")
    first = ns.get("secret", "sig-stream-signing")["data"]
    assert len(first) == 1
    ns.kubectl("patch", "vp/sig", "--type=merge", "-p", '{"spec":{"replicas":1}}')
    eventually(lambda: ns.get("deployment", "sig-stream")["spec"]["replicas"] == 1)
    assert ns.get("secret", "sig-stream-signing")["data"] == first
    config = ns.get("configmap", "sig-stream-config")["data"]
    assert config["VOD_SIGNING_ACTIVE_KEY_ID"] == next(iter(first))


# -- self-healing --------------------------------------------------------------------------


def test_deleted_and_edited_children_come_back(namespace: Namespace) -> None:
    ns = namespace
    ns.apply(platform("heal"))
    wait_ready(ns, "heal")
    old = uid(ns, "service", "heal-stream")
    ns.kubectl("delete", "service", "heal-stream")
    eventually(
        lambda: ns.exists("service", "heal-stream") and uid(ns, "service", "heal-stream") != old,
        timeout=10,
    )

    ns.kubectl("delete", "configmap", "heal-stream-config")
    eventually(lambda: ns.exists("configmap", "heal-stream-config"), timeout=10)

    ns.kubectl(
        "patch", "deployment", "heal-stream", "--type=json", "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil:1"}]',
    )  # fmt: skip
    eventually(
        lambda: (
            ns.get("deployment", "heal-stream")["spec"]["template"]["spec"]["containers"][0][
                "image"
            ]
            != "evil:1"
        ),
        timeout=10,
    )


def test_deleting_the_platform_garbage_collects_children(
    namespace: Namespace, operator: OperatorProcess
) -> None:
    """... and its series leave the operator's /metrics, where they were while it lived."""
    ns = namespace
    ns.apply(platform("gone"))
    wait_ready(ns, "gone")
    mine = {("namespace", ns.name), ("platform", "gone")}

    def platform_series() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {k: v for k, v in operator.metrics().items() if mine <= k[1]}

    def ready_series() -> bool:
        found = platform_series()
        key = frozenset(mine)
        return (
            found.get(("vod_platform_phase", key | {("phase", "Ready")})) == 1
            and found.get(("vod_platform_replicas_ready", key)) == 2
        )

    eventually(ready_series, timeout=10)
    found = platform_series()
    key = frozenset(mine)
    assert found[("vod_platform_replicas_desired", key)] == 2
    assert found[("vod_platform_phase", key | {("phase", "Progressing")})] == 0
    assert found[("vod_assets", key | {("phase", "Ready")})] == 0
    assert found[("vod_assets_processing_oldest_seconds", key)] == 0
    assert ("vod_platform_autoscaling_max_replicas", key) not in found  # autoscaling is off
    samples = operator.metrics()
    reconciles = {
        dict(labels)["result"]: value
        for (name, labels), value in samples.items()
        if name == "controller_runtime_reconcile_total"
        and dict(labels)["controller"] == "videoplatform"
    }
    assert reconciles["success"] > 0
    assert set(reconciles) == {"success", "error", "requeue", "requeue_after"}
    requests = {
        dict(labels)["method"]: value
        for (name, labels), value in samples.items()
        if name == "rest_client_requests_total" and dict(labels)["code"] == "200"
    }
    assert requests["GET"] > 0
    assert requests["PATCH"] > 0  # server-side applies of the children and the status
    assert samples[("vod_operator_build_info", frozenset({("version", __version__)}))] == 1

    ns.kubectl("delete", "vp", "gone")

    def children() -> list[str]:
        out = ns.kubectl(
            "get", "configmap,deployment,service,pdb", "-l", "app.kubernetes.io/instance=gone",
            "-o", "name",
        ).stdout  # fmt: skip
        return list(out.split())

    eventually(lambda: children() == [], timeout=60)
    eventually(lambda: platform_series() == {}, timeout=10)


# -- pause, failure, restart ---------------------------------------------------------------


def test_suspend_pauses_without_deleting(namespace: Namespace) -> None:
    ns = namespace
    ns.apply(platform("nap"))
    wait_ready(ns, "nap")
    ns.kubectl("patch", "vp/nap", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    eventually(lambda: ns.get("vp", "nap")["status"]["phase"] == "Suspended")
    assert condition(ns.get("vp", "nap"), "Progressing")["reason"] == "Suspended"
    ns.kubectl("delete", "service", "nap-stream")
    ns.kubectl("patch", "vp/nap", "--type=merge", "-p", '{"spec":{"replicas":1}}')
    with pytest.raises(AssertionError):
        eventually(lambda: ns.exists("service", "nap-stream"), timeout=4)
    assert ns.get("deployment", "nap-stream")["spec"]["replicas"] == 2  # nothing touched
    ns.kubectl("patch", "vp/nap", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    eventually(lambda: ns.exists("service", "nap-stream"), timeout=15)
    eventually(lambda: ns.get("deployment", "nap-stream")["spec"]["replicas"] == 1)


def test_a_refused_child_is_reported_not_crashed(
    namespace: Namespace, operator: OperatorProcess
) -> None:
    ns = namespace
    # Valid for the CRD, refused by the API server: a CPU request above its limit.
    ns.apply(platform("ouch", "resources: {requests: {cpu: '2'}, limits: {cpu: '1'}}"))

    def degraded() -> dict[str, Any]:
        cond = condition(ns.get("vp", "ouch"), "Degraded")
        return cond if cond["status"] == "True" else {}

    cond = eventually(degraded, timeout=30)
    assert cond["reason"] == "ApplyFailed"
    assert "Deployment/ouch-stream" in cond["message"]
    assert "limit" in cond["message"]
    assert ns.get("vp", "ouch")["status"]["phase"] == "Failed"
    events = ns.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=ouch,reason=ApplyFailed",
        "-o", "name",
    ).stdout  # fmt: skip
    assert events.strip()
    assert operator.alive()
    # Refused as invalid: the same spec would be refused again, so it is not retried. Counted
    # in the operator's log (the API server's counters also see other tests' namespaces).
    time.sleep(4)  # the pass its own children's events asked for has run by now
    refused = f"apply Deployment/ouch-stream in {ns.name} failed: 422"

    def refused_applies() -> int:
        return operator.log_path.read_text(errors="replace").count(refused)

    before = refused_applies()
    assert before >= 1
    time.sleep(12)  # the fixture's backoff (1 s doubling to 10 s) would retry 2-3 times here
    assert refused_applies() == before
    # Fixing the spec heals it.
    ns.kubectl(
        "patch", "vp/ouch", "--type=merge", "-p",
        '{"spec":{"resources":{"requests":{"cpu":"100m"},"limits":{"cpu":"1"}}}}',
    )  # fmt: skip
    wait_ready(ns, "ouch")
    assert condition(ns.get("vp", "ouch"), "Degraded")["status"] == "False"


def test_platforms_created_while_down_are_reconciled_at_start(
    namespace: Namespace, operator: OperatorProcess
) -> None:
    ns = namespace
    operator.stop()
    try:
        ns.apply(platform("late"))
        assert not ns.exists("deployment", "late-stream")
    finally:
        operator.start()
    wait_ready(ns, "late")


# -- quiet at rest -------------------------------------------------------------------------


def test_platforms_at_rest_cause_no_writes(namespace: Namespace, kube_cluster: Any) -> None:
    ns = namespace
    ns.apply(
        "---\n".join(
            platform(f"idle-{i}", "security: {signedUrls: {enabled: true}}") for i in range(3)
        )
    )
    for i in range(3):
        wait_ready(ns, f"idle-{i}")
    # Other tests' namespaces must finish terminating first (their deletions are writes).
    eventually(
        lambda: "Terminating" not in kube_cluster.kubectl("get", "namespaces").stdout, timeout=120
    )
    time.sleep(6)  # let the last status echoes settle; resync runs every 5 s
    before = write_counts(kube_cluster)
    time.sleep(16)  # three resync passes over every platform
    after = write_counts(kube_cluster)
    ours = {
        key: after[key] - before.get(key, 0)
        for key in after
        if key[1] in OPERATOR_RESOURCES and after[key] != before.get(key, 0)
    }
    assert ours == {}


# -- monitoring appears later --------------------------------------------------------------

MONITORING_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, listKind: ServiceMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, plural: prometheusrules, listKind: PrometheusRuleList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def test_monitoring_objects_follow_the_api(namespace: Namespace, kube_cluster: Any) -> None:
    ns = namespace
    ns.apply(platform("mon"))
    wait_ready(ns, "mon")
    assert condition(ns.get("vp", "mon"), "Monitoring")["reason"] == "MonitoringCRDsNotInstalled"
    kube_cluster.kubectl("apply", "-f", "-", input=MONITORING_CRDS)
    try:
        eventually(
            lambda: condition(ns.get("vp", "mon"), "Monitoring")["status"] == "True", timeout=45
        )
        assert ns.exists("servicemonitor", "mon-stream")
        assert ns.exists("prometheusrule", "mon-stream")
        ns.kubectl(
            "patch", "vp/mon", "--type=merge", "-p", '{"spec":{"monitoring":{"enabled":false}}}'
        )
        eventually(lambda: not ns.exists("servicemonitor", "mon-stream"))
        assert condition(ns.get("vp", "mon"), "Monitoring")["reason"] == "Disabled"
    finally:
        kube_cluster.kubectl(
            "delete", "crd", "servicemonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com", "--wait=false",
        )  # fmt: skip
