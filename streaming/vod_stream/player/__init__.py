"""The player page: ``/play/<media URL path>`` (e.g. ``/play/t/<token>/assets/ns/name/master.m3u8``)
answers one static page that plays the rest of its own URL with hls.js; ``/player/<file>`` serves
the page's script, style, hls.js and hls.js's license.

hls.js comes from the npm registry, pinned in ``streaming/player/package-lock.json``, and is
copied into ``static/`` by ``make player-assets`` (committed, so offline image builds have it);
nothing is loaded from another site at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources

from aiohttp import web

from vod_stream.errors import json_error

PAGE_PATH = "/play/"
ASSET_PATH = "/player/"
PATHS = (PAGE_PATH, ASSET_PATH)
PAGE = "index.html"
#: The files under /player/ and their types (nothing else is served).
ASSETS = {
    "hls.min.js": "text/javascript; charset=utf-8",
    "player.js": "text/javascript; charset=utf-8",
    "player.css": "text/css; charset=utf-8",
    "hls.js.LICENSE.txt": "text/plain; charset=utf-8",
}
#: Scripts and media only from this origin; hls.js runs its transmuxer in a blob: worker.
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    # the page's own URL may carry a token: never send it elsewhere
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@cache
def static_file(name: str) -> bytes:
    """A file of ``static/``, read once."""
    return (resources.files(__package__) / "static" / name).read_bytes()


def respond(method: str, path: str, headers: Mapping[str, str]) -> web.Response:
    """The answer to a request for a /play/ or /player/ path."""
    if method not in ("GET", "HEAD"):
        return json_error(405, f"{method} is not allowed here", {**headers, "Allow": "GET, HEAD"})
    if path.startswith(PAGE_PATH):
        return web.Response(body=static_file(PAGE), headers={**headers, **PAGE_HEADERS})
    name = path[len(ASSET_PATH) :]
    if name not in ASSETS:
        return json_error(404, "not found", headers)
    return web.Response(
        body=static_file(name),
        headers={
            **headers,
            "Content-Type": ASSETS[name],
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
        },
    )
