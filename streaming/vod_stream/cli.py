"""``vod-stream``: ``serve`` (the default) runs the server; ``sign`` prints a signed URL.

Every setting is a ``VOD_*`` environment variable (see the README) and, for ``serve``, also a
flag (``--media-root``, ``--port``, ...): a flag wins over the environment, which wins over the
config file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from vod_stream import __version__, signing
from vod_stream.config import PREFIX, SPECS, ConfigError, Settings, Spec, _bool
from vod_stream.keys import KeyRing


def flag_of(spec: Spec) -> str:
    return "--" + spec.name.lower().replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vod-stream",
        description="HTTP Range streaming server: a compiled data plane for media, a Python "
        "application for uploads and the admin API. Settings come from VOD_* environment "
        "variables or, for `serve`, the flags listed by `vod-stream serve --help`.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser(
        "serve",
        help="run the server (the default)",
        description="Run the server. Each flag sets the VOD_* setting named beside it (a flag "
        "wins over the environment, which wins over VOD_CONFIG_FILE); the default is shown.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for spec in SPECS:
        default = spec.default if spec.default != "" else "unset"
        extra: dict[str, object] = {}
        if spec.parse is _bool:
            extra = {"nargs": "?", "const": "true"}
        serve.add_argument(
            flag_of(spec),
            dest=spec.name,
            metavar=spec.name if spec.parse is not _bool else "BOOL",
            help=f"{spec.meaning} ({PREFIX}{spec.name}; default: {default})",
            **extra,  # type: ignore[arg-type]
        )
    sign = commands.add_parser("sign", help="print a signed playback URL")
    sign.add_argument("path", help="URL path of the file, e.g. /movies/a.mp4")
    sign.add_argument("--ttl", type=int, help="seconds until expiry (VOD_SIGNED_URL_TTL_SECONDS)")
    sign.add_argument("--base-url", default="", help="prefix such as http://host:8080")
    sign.add_argument("--ip", help="bind the URL to this client IP")
    sign.add_argument(
        "--prefix", help="sign every path under this prefix (ends with '/'), e.g. an HLS folder"
    )
    return parser


def _sign(settings: Settings, args: argparse.Namespace) -> int:
    active = KeyRing(settings.signing_keys_dir, settings.signing_active_key_id).active()
    if active is None:
        print(f"vod-stream sign: no signing key in {settings.signing_keys_dir}", file=sys.stderr)
        return 1
    path = args.path if args.path.startswith("/") else "/" + args.path
    ttl = args.ttl if args.ttl is not None else settings.signed_url_ttl_seconds
    try:
        params = signing.sign_params(
            path, int(time.time()) + ttl, active[0], active[1], ip=args.ip, prefix=args.prefix
        )
    except ValueError as exc:
        print(f"vod-stream sign: {exc}", file=sys.stderr)
        return 2
    print(signing.signed_url(args.base_url, path, params))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {
        PREFIX + spec.name: value
        for spec in SPECS
        if (value := getattr(args, spec.name, None)) is not None
    }
    try:
        settings = Settings.from_env({**os.environ, **flags})
    except ConfigError as exc:
        print(f"vod-stream: {exc}", file=sys.stderr)
        return 2
    if args.command == "sign":
        return _sign(settings, args)
    from vod_stream.supervisor import run

    return run(settings)
