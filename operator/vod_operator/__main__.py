"""`python -m vod_operator` / `vod-operator`: run the operator against the current cluster."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

import kopf

from vod_operator import __version__, memory


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vod-operator", description="Reconcile VideoPlatform resources (kopf, standalone)."
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; globs allowed); default: all namespaces",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("VOD_OPERATOR_LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="liveness endpoint URL kopf serves (default %(default)s)",
    )
    parser.add_argument("--workers", type=int, help="platforms reconciled concurrently")
    parser.add_argument("--resync-seconds", type=float, help="read-only safety-net interval")
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only the holder of a Lease reconciles (VOD_OPERATOR_LEADER_ELECTION; default: "
        "on in a pod, off elsewhere)",
    )
    parser.add_argument("--log-level", default=os.environ.get("VOD_OPERATOR_LOG_LEVEL", "INFO"))
    parser.add_argument("--version", action="version", version=f"vod-operator {__version__}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    memory.limit_arenas()  # first: before any thread allocates
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.workers is not None:
        os.environ["VOD_OPERATOR_WORKERS"] = str(args.workers)
    if args.resync_seconds is not None:
        os.environ["VOD_OPERATOR_RESYNC_SECONDS"] = str(args.resync_seconds)
    if args.leader_elect is not None:
        os.environ["VOD_OPERATOR_LEADER_ELECTION"] = str(args.leader_elect).lower()
    import vod_operator.handlers  # noqa: F401  (registers the handlers)

    # kopf names itself `user@host` with getpass.getuser(), which raises for a container's
    # numeric uid without a passwd entry (the image runs as 65532); getuser() reads $USER first.
    os.environ.setdefault("USER", "vod-operator")
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
