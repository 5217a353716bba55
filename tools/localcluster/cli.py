"""Command line: `python -m localcluster build|up|down|status|which|images|monitoring|keda`."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time

from localcluster import binaries, cluster, images, preflight, realnode
from localcluster.build import build
from localcluster.paths import clusters_dir
from localcluster.versions import ALL_BINARIES, CONTROL_PLANE_BINARIES, NODE_BINARIES

DEFAULT_NAME = "vod"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build (or locate) the pinned binaries, cached")
    p_build.add_argument("binaries", nargs="*", metavar="BINARY", help="default: all")
    p_build.add_argument("--force", action="store_true", help="rebuild even when present")
    for command, text in (
        ("up", "start a control plane (or report the running one)"),
        ("down", "stop a control plane and remove its state"),
        ("status", "show whether each component runs (exit 1 when not all do)"),
    ):
        p = sub.add_parser(command, help=text)
        p.add_argument(
            "--name", default=DEFAULT_NAME, help=f"cluster name (default {DEFAULT_NAME})"
        )
        if command == "up":
            _no_s3_server_flag(p)
            p.add_argument(
                "--nodes",
                type=int,
                default=None,
                metavar="N",
                help="real nodes to start (default: LOCALCLUSTER_NODES, else 1); each has its "
                "own containerd, kubelet, kube-proxy, network namespace and pod range",
            )
    p_mon = sub.add_parser(
        "monitoring",
        help="install the Prometheus Operator and a Prometheus into the running cluster (real "
        "node), print the port-forward line and a query to try",
    )
    p_mon.add_argument(
        "--name", default=DEFAULT_NAME, help=f"cluster name (default {DEFAULT_NAME})"
    )
    p_keda = sub.add_parser(
        "keda",
        help="install KEDA (operator + external-metrics API server) into the running cluster "
        "(real node)",
    )
    p_keda.add_argument(
        "--name", default=DEFAULT_NAME, help=f"cluster name (default {DEFAULT_NAME})"
    )
    p_which = sub.add_parser("which", help="print the path of a binary (exit 1 if not built)")
    p_which.add_argument("binary", choices=ALL_BINARIES)
    p_images = sub.add_parser(
        "images",
        help="build the pause, base, streaming and operator images offline, cached by content hash",
    )
    p_images.add_argument(
        "--load-into",
        metavar="SOCKET",
        help="then import them into the containerd listening on SOCKET (namespace k8s.io)",
    )
    _no_s3_server_flag(p_images)
    return parser


def _no_s3_server_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-s3-server",
        dest="s3_server",
        action="store_false",
        help="leave out the S3 server's image (SeaweedFS: only the tests use it; `make demo`)",
    )


def cmd_build(names: list[str], force: bool) -> int:
    unknown = sorted(set(names) - set(ALL_BINARIES))
    if unknown:
        print(f"unknown binaries: {', '.join(unknown)} (known: {', '.join(ALL_BINARIES)})")
        return 2
    build(names or None, force=force)
    return 0


def cmd_which(binary: str) -> int:
    found = binaries.find(binary)
    if found is None:
        return 1
    print(found)
    return 0


def cmd_up(name: str, s3_server: bool = True, nodes: int | None = None) -> int:
    real_node = preflight.real_node_wanted()
    count = preflight.real_nodes_wanted() if nodes is None else nodes
    if count < 1:
        raise preflight.PreflightError(f"--nodes must be at least 1, not {count}")
    if real_node:
        preflight.require_real_node()
    build([*CONTROL_PLANE_BINARIES, *(NODE_BINARIES if real_node else ())])
    root = clusters_dir() / name
    up = cluster.running(root)
    if up is not None:
        print(f"# cluster {name!r} already running at {up.server}")
    else:
        began = time.monotonic()
        node_images = realnode.default_images(s3_server=s3_server) if real_node else None
        up = cluster.start(root, name, node_images=node_images, nodes=count)
        took = time.monotonic() - began
        real = f"{count} real node{'s' if count > 1 else ''}" if real_node else "no real node"
        print(
            f"# cluster {name!r} up in {took:.1f} s at {up.server} ({real}); logs: {root / 'logs'}"
        )
    print(f"export KUBECONFIG={shlex.quote(str(up.kubeconfig))}")
    return 0


def cmd_down(name: str) -> int:
    root = clusters_dir() / name
    killed = cluster.stop(root)
    shutil.rmtree(root, ignore_errors=True)
    note = f" (SIGKILLed {', '.join(killed)})" if killed else ""
    print(f"cluster {name!r} stopped and its host state restored{note}")
    return 0


def cmd_status(name: str) -> int:
    root = clusters_dir() / name
    for component, pid in cluster.component_status(root).items():
        print(f"{component:<24} {f'running (pid {pid})' if pid else 'stopped'}")
    up = cluster.running(root)
    if up is None:
        return 1
    print(f"server {up.server}")
    print(f"export KUBECONFIG={shlex.quote(str(up.kubeconfig))}")
    return 0


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def cmd_images(load_into: str | None, s3_server: bool = True) -> int:
    began = time.monotonic()
    made = images.ensure_all(s3_server=s3_server)
    for image in made:
        print(
            f"{image.name:<20} {image.action:<7} {image.seconds:6.1f} s  {_size(image.size):>9}  "
            f"{image.ref}  {image.archive}"
        )
    if load_into is not None:
        for loaded in images.load_all(made, load_into):
            took = f"{loaded.seconds:6.1f} s"
            print(f"{'':<20} {loaded.action:<8}{took}  into {load_into}: {loaded.ref}")
    print(f"# images ready in {time.monotonic() - began:.1f} s")
    return 0


def cmd_monitoring(name: str) -> int:
    from localcluster import monitoring
    from localcluster.handle import KubeCluster

    up = cluster.running(clusters_dir() / name)
    if up is None:
        print(f"localcluster monitoring: cluster {name!r} is not running (`make cluster-up`)")
        return 1
    installed = monitoring.install(KubeCluster(kubeconfig=up.kubeconfig, server=up.server))
    took, url = installed.seconds, installed.prometheus.url
    print(f"# monitoring stack ready in {took:.1f} s; Prometheus at {url}")
    print(f"export KUBECONFIG={shlex.quote(str(up.kubeconfig))}")
    print(installed.port_forward)
    print(f"# {installed.try_query}")
    return 0


def cmd_keda(name: str) -> int:
    from localcluster import keda
    from localcluster.handle import KubeCluster

    up = cluster.running(clusters_dir() / name)
    if up is None:
        print(f"localcluster keda: cluster {name!r} is not running (`make cluster-up`)")
        return 1
    took = keda.install(KubeCluster(kubeconfig=up.kubeconfig, server=up.server))
    print(f"# KEDA ready in {took:.1f} s (ScaledObjects, external.metrics.k8s.io)")
    print(f"export KUBECONFIG={shlex.quote(str(up.kubeconfig))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            return cmd_build(args.binaries, args.force)
        if args.command == "which":
            return cmd_which(args.binary)
        if args.command == "images":
            return cmd_images(args.load_into, args.s3_server)
        if args.command == "monitoring":
            return cmd_monitoring(args.name)
        if args.command == "keda":
            return cmd_keda(args.name)
        if args.command == "up":
            return cmd_up(args.name, args.s3_server, args.nodes)
        return {"down": cmd_down, "status": cmd_status}[args.command](args.name)
    except (cluster.ClusterError, FileNotFoundError, RuntimeError, OSError) as err:
        print(f"localcluster {args.command}: {err}", file=sys.stderr)
        return 1
