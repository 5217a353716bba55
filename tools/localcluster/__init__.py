"""A real local Kubernetes control plane, built from Go modules and run on 127.0.0.1, no Docker.

- `python -m localcluster build` builds the pinned binaries (versions.py) once into
  `${XDG_CACHE_HOME:-~/.cache}/vod-operator/bin/<component>-<version>/`, each in a throwaway Go
  module (build.py); fitting binaries in $KUBEBUILDER_ASSETS or on PATH are used instead
  (binaries.py). `python -m localcluster which helm` prints the helm to use.
- `python -m localcluster up|down|status [--name N]` runs etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler and kwok with one fake Node (cluster.py, flags.py) and
  prints `export KUBECONFIG=...`; state lives in the cache's `clusters/<name>/`.
- `temporary_cluster(folder)` is the same for one Python process (the pytest fixture
  `kube_cluster`, benchmarks); `write_request_count(kubeconfig)` counts the API server's writes.

The processes are driven directly rather than through kwokctl: the flags are in one readable
place (flags.py), start-up waits on exactly what the tests need (readyz, a Ready node, the default
ServiceAccount), and stopping is by our own pid files and process groups, with the kernel killing
the components if a test session dies (processes.py).
"""

from localcluster.binaries import helm_path
from localcluster.handle import KubeCluster
from localcluster.metrics import write_request_count
from localcluster.session import temporary_cluster

__all__ = ["KubeCluster", "helm_path", "temporary_cluster", "write_request_count"]
