"""A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)
built from Go modules and run on 127.0.0.1, for tests and for machines without Docker."""
