"""`python -m vod_delivery COMMAND`: the Makefile's delivery targets call these."""

from __future__ import annotations

import argparse
import sys

from vod_delivery import dashboards, generated, project, reference, sync


def _crd_reference(args: argparse.Namespace) -> int:
    if args.check:
        if reference.is_fresh():
            return 0
        print(f"{project.REFERENCE_DOC} is stale: run `make crd-reference`", file=sys.stderr)
        return 1
    reference.write()
    print(f"wrote {project.REFERENCE_DOC.relative_to(project.ROOT)}")
    return 0


def _reference(args: argparse.Namespace) -> int:
    if args.check:
        stale = generated.stale()
        for path in stale:
            name = path.relative_to(project.ROOT)
            print(f"{name} is stale: run `make reference`", file=sys.stderr)
        return 1 if stale else 0
    for path in generated.write():
        print(f"wrote {path.relative_to(project.ROOT)}")
    return 0


def _dashboards(args: argparse.Namespace) -> int:
    if args.check:
        stale = dashboards.stale()
        for path in stale:
            print(
                f"{path.relative_to(project.ROOT)} is stale: run `make dashboards`", file=sys.stderr
            )
        return 1 if stale else 0
    for path in dashboards.write():
        print(f"wrote {path.relative_to(project.ROOT)}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    if args.check:
        stale = sync.check()
        for path in stale:
            print(f"out of step: {path} (run `make sync-chart-crds`)", file=sys.stderr)
        return 1 if stale else 0
    for path in sync.apply():
        print(f"updated {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vod_delivery import demo

    return demo.up(kind=args.kind) if args.action == "up" else demo.down()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m vod_delivery", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "reference",
        help="generate docs/reference.md (from crds/) and docs/streaming-settings.md (from SPECS)",
    )
    gen.add_argument("--check", action="store_true", help="fail when a generated page is stale")
    gen.set_defaults(func=_reference)
    ref = sub.add_parser("crd-reference", help="generate docs/reference.md from crds/")
    ref.add_argument("--check", action="store_true", help="fail when the committed doc is stale")
    ref.set_defaults(func=_crd_reference)
    dash = sub.add_parser("dashboards", help="generate monitoring/dashboards/*.json")
    dash.add_argument("--check", action="store_true", help="fail when a dashboard is stale")
    dash.set_defaults(func=_dashboards)
    syn = sub.add_parser(
        "sync", help="copy crds/ into the chart, the version into Chart.yaml/kustomize"
    )
    syn.add_argument("--check", action="store_true", help="fail when a copy is out of step")
    syn.set_defaults(func=_sync)
    dem = sub.add_parser("demo", help="the walkthrough `make demo` runs: up (default) or down")
    dem.add_argument("action", nargs="?", choices=["up", "down"], default="up")
    dem.add_argument("--kind", action="store_true", help="the kind path (a Docker engine answers)")
    dem.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))
