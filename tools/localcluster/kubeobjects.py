"""Pure builders of Kubernetes objects for the stacks the local cluster installs (plain dicts).

Shared by stackmanifests.py (monitoring) and kedamanifests.py (KEDA). Every object's labels
name its component (`app.kubernetes.io/name`) and its stack (`app.kubernetes.io/part-of`, the
`part_of` argument). Key order is part of the output: the installers send these dicts as JSON.
"""

from __future__ import annotations

from typing import Any

#: nobody, as the stack images run (stackimages.py; upstream KEDA's images run as 1000); set as
#: the group too (containerd 1.6 gives GID 0 otherwise).
NOBODY = 65534
RBAC_API = "rbac.authorization.k8s.io"


def meta(name: str, namespace: str | None, component: str, part_of: str) -> dict[str, Any]:
    """metadata; `namespace` None for cluster-scoped objects."""
    labels = {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": part_of}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def role(
    kind: str, name: str, namespace: str | None, rules: list[dict[str, Any]], part_of: str
) -> dict[str, Any]:
    """A `Role` or `ClusterRole` (`kind`), labelled as its own component."""
    return {
        "apiVersion": f"{RBAC_API}/v1",
        "kind": kind,
        "metadata": meta(name, namespace, name, part_of),
        "rules": rules,
    }


def binding(
    kind: str,
    name: str,
    role_name: str,
    namespace: str | None,
    account: str,
    account_namespace: str,
    part_of: str,
) -> dict[str, Any]:
    """A `<kind>Binding` of the `kind` (Role or ClusterRole) `role_name` to a ServiceAccount."""
    return {
        "apiVersion": f"{RBAC_API}/v1",
        "kind": f"{kind}Binding",
        "metadata": meta(name, namespace, name, part_of),
        "roleRef": {"apiGroup": RBAC_API, "kind": kind, "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    }


def service_account(name: str, namespace: str, part_of: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(name, namespace, name, part_of),
    }


def pod_security(*, fs_group: bool = False) -> dict[str, Any]:
    """Run as nobody under the runtime's default seccomp profile; `fs_group`: volumes are
    owned by nobody's group too (for a pod that writes to them)."""
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": NOBODY, "runAsGroup": NOBODY}
    if fs_group:
        context["fsGroup"] = NOBODY
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def container_security() -> dict[str, Any]:
    """No privilege escalation, a read-only root filesystem, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def deployment(name: str, namespace: str, pod_spec: dict[str, Any], part_of: str) -> dict[str, Any]:
    """One replica of `pod_spec`, its pod labelled and selected by `app.kubernetes.io/name`."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, namespace, name, part_of),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
