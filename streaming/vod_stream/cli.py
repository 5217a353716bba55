"""``vod-stream``: ``serve`` (the default) runs the server; ``sign`` prints a signed URL."""

from __future__ import annotations

import argparse
import sys
import time

from vod_stream import __version__, signing
from vod_stream.config import ConfigError, Settings
from vod_stream.keys import KeyRing


def _parser(settings_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vod-stream",
        description="HTTP Range streaming server. Settings come from VOD_* environment "
        "variables (see the README): " + settings_help,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the server (the default)")
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
    args = _parser("VOD_PORT, VOD_MEDIA_ROOT, ...").parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"vod-stream: {exc}", file=sys.stderr)
        return 2
    if args.command == "sign":
        return _sign(settings, args)
    from vod_stream.supervisor import run

    return run(settings)
