"""A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)
built from Go modules and run on 127.0.0.1, for tests and for machines without Docker."""

from localcluster.binaries import helm_path
from localcluster.handle import KubeCluster
from localcluster.metrics import write_request_count
from localcluster.session import temporary_cluster

__all__ = ["KubeCluster", "helm_path", "temporary_cluster", "write_request_count"]
