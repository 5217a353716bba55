"""``vod-stream``: ``serve`` (the default) runs the server; ``sign`` prints a signed URL;
``package`` turns a source video into an HLS ladder in the origin (what a VideoAsset's Job
runs); ``unpublish`` removes an asset's outputs.

Every setting is a ``VOD_*`` environment variable (docs/streaming-settings.md) and, for
``serve``, also a flag (``--media-root``, ``--port``, ...): a flag wins over the environment,
which wins over the config file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from vod_stream import __version__, signing
from vod_stream.config import PREFIX, SPECS, ConfigError, Settings, _bool, flag_of
from vod_stream.keys import KeyRing

if TYPE_CHECKING:
    from vod_stream.storage import S3Origin


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
    sign = commands.add_parser(
        "sign",
        help="print a signed playback URL",
        description="Print a signed URL: for one file (query parameters), or with --prefix a "
        "path token for every file under a folder, e.g. an asset's HLS ladder: "
        "`vod-stream sign --prefix /assets/ns/name/` prints /t/<token>/assets/ns/name/master.m3u8",
    )
    sign.add_argument(
        "path",
        nargs="?",
        help="URL path of the file, e.g. /movies/a.mp4 (with --prefix: default PREFIXmaster.m3u8)",
    )
    sign.add_argument("--ttl", type=int, help="seconds until expiry (VOD_SIGNED_URL_TTL_SECONDS)")
    sign.add_argument("--base-url", default="", help="prefix such as http://host:8080")
    sign.add_argument("--ip", help="bind the URL to this client IP")
    sign.add_argument(
        "--prefix", help="sign every path under this folder (ends with '/'): a path token"
    )
    sign.add_argument(
        "--player", action="store_true", help="print the player page's URL for it instead"
    )
    _package_parsers(commands)
    return parser


def _package_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    root = os.environ.get("VOD_MEDIA_ROOT", "/media")
    package = commands.add_parser(
        "package", help="package a source video into an HLS ladder, poster and storyboard"
    )
    source = package.add_mutually_exclusive_group(required=True)
    source.add_argument("--source-path", help="the source, relative to the media root")
    source.add_argument("--source-url", help="the source, downloaded over HTTP(S)")
    package.add_argument(
        "--headers-dir", type=Path, help="request headers for --source-url: one file per header"
    )
    package.add_argument("--media-root", type=Path, default=Path(root), help="the origin")
    package.add_argument("--prefix", required=True, help="asset folder, e.g. assets/ns/name")
    package.add_argument("--revision", required=True, help="revision folder name (hex)")
    package.add_argument(
        "--rendition",
        action="append",
        required=True,
        help="NAME:HEIGHT:VIDEOk[:AUDIOk], repeatable, e.g. 720p:720:3000k:128k",
    )
    package.add_argument("--segment-seconds", type=int, default=4)
    package.add_argument("--preset", default="veryfast", help="x264 preset")
    package.add_argument("--poster-at", type=float, help="poster offset in seconds")
    package.add_argument("--storyboard-interval", type=float, help="seconds between thumbnails")
    package.add_argument("--work-dir", type=Path, default=Path("/tmp/vod-package"))
    package.add_argument("--result-file", type=Path, help="where the result JSON goes too")
    package.add_argument("--report-seconds", type=float, default=2.0)
    unpublish = commands.add_parser("unpublish", help="delete an asset's outputs (its prefix)")
    unpublish.add_argument("--media-root", type=Path, default=Path(root), help="the origin")
    unpublish.add_argument("--prefix", required=True, help="asset folder, e.g. assets/ns/name")


def _package(args: argparse.Namespace) -> int:
    from vod_stream import ladder, package

    try:
        renditions = tuple(ladder.Rendition.parse(text) for text in args.rendition)
    except ladder.PlanError as exc:
        print(f"vod-stream package: {exc}", file=sys.stderr)
        return 2
    try:
        origin = object_origin()
    except ConfigError as exc:
        print(f"vod-stream package: {exc}", file=sys.stderr)
        return 2
    request = package.Request(
        media_root=args.media_root,
        prefix=args.prefix,
        revision=args.revision,
        renditions=renditions,
        source_path=args.source_path,
        source_url=args.source_url,
        headers_dir=args.headers_dir,
        work_dir=args.work_dir,
        segment_seconds=args.segment_seconds,
        preset=args.preset,
        poster_at=args.poster_at,
        storyboard_interval=args.storyboard_interval,
        result_file=args.result_file,
        report_seconds=args.report_seconds,
        origin=origin,
    )
    code = package.run(request)
    return code if origin is None else _leave(code)


def _leave(code: int) -> NoReturn:
    """End a command that used the S3 client at once, its output written: obstore's runtime
    threads can abort the interpreter's finalization (SIGABRT after the result was written, in
    about 1 run of 5 here), which would turn a finished Job into a failed one. The known race of
    tokio workers and Py_Finalize (pyo3-async-runtimes issue 40: no runtime shutdown hook)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def object_origin() -> S3Origin | None:
    """The S3 origin when the environment says VOD_ORIGIN=s3 (the packaging Job of an S3
    platform gets the streaming pods' settings); None for the file origin (--media-root)."""
    settings = Settings.from_env()
    if settings.origin == "http":
        raise ConfigError("VOD_ORIGIN=http: the HTTP origin is read-only, package into file or s3")
    if settings.origin != "s3":
        return None
    from vod_stream.storage import S3Origin

    return S3Origin(settings)


def _sign(settings: Settings, args: argparse.Namespace) -> int:
    active = KeyRing(settings.signing_keys_dir, settings.signing_active_key_id).active()
    if active is None:
        print(f"vod-stream sign: no signing key in {settings.signing_keys_dir}", file=sys.stderr)
        return 1
    if args.path is None and args.prefix is None:
        print("vod-stream sign: give a path, a --prefix, or both", file=sys.stderr)
        return 2
    path = args.path if args.path is not None else f"{args.prefix}master.m3u8"
    path = path if path.startswith("/") else "/" + path
    ttl = args.ttl if args.ttl is not None else settings.signed_url_ttl_seconds
    exp = int(time.time()) + ttl
    base = args.base_url.rstrip("/")
    try:
        if args.prefix is not None:
            if not path.startswith(args.prefix):
                raise ValueError("the path must be under the prefix")
            token = signing.prefix_token(args.prefix, exp, active[0], active[1], ip=args.ip)
            url_path = signing.token_path(token, path)
            print(base + (signing.player_path(url_path) if args.player else url_path))
            return 0
        params = signing.sign_params(path, exp, active[0], active[1], ip=args.ip)
    except ValueError as exc:
        print(f"vod-stream sign: {exc}", file=sys.stderr)
        return 2
    url = signing.signed_url(args.base_url, path, params)
    if args.player:
        url = base + signing.player_path(url[len(base) :])
    print(url)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "package":  # needs no server settings
        return _package(args)
    if args.command == "unpublish":
        from vod_stream.package import remove

        try:
            origin = object_origin()
        except ConfigError as exc:
            print(f"vod-stream unpublish: {exc}", file=sys.stderr)
            return 2
        code = remove(args.media_root, args.prefix, origin)
        return code if origin is None else _leave(code)
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

    code = run(settings)
    # the server's S3 client (uploads) shares obstore's runtime: same clean ending
    return code if settings.origin != "s3" else _leave(code)
