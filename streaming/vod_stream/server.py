"""The Python application behind the data plane: uploads (PUT), DELETE, the admin/signing API,
/ping, /healthz, /readyz and the Python side's /metrics.

The data plane (``vod_stream._dataplane``) owns the client connections and answers GET, HEAD
and OPTIONS of media itself; it proxies every other request here over a Unix socket, with the
request id, traceparent and client address it assigned (``X-Request-Id``, ``traceparent``,
``X-Vod-Remote``) and adds the CORS headers to the responses on the way back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream import logs, metrics, player, signing, tus, uploads
from vod_stream.auth import AuthError, JwtVerifier
from vod_stream.config import Settings
from vod_stream.errors import json_error, json_response
from vod_stream.keys import KeyRing
from vod_stream.paths import media_path
from vod_stream.storage import Origin, open_origin
from vod_stream.tuss3 import S3Store
from vod_stream.tusstore import FileStore, UploadStore

ROUTES = {"/ping": "ping", "/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics"}
ADMIN_SIGN = "/admin/sign"
MEDIA_METHODS = "GET, HEAD, PUT, DELETE, OPTIONS"
CLIENT_CLOSED = 499  # nginx's status for a response the client did not take in full


@dataclass(slots=True)
class RequestContext:
    """Per-request observability state."""

    started: float
    request_id: str
    traceparent: str
    headers: dict[str, str]  # sent with every response: X-Request-Id


class StreamApp:
    """State shared by the requests of the Python side."""

    def __init__(self, settings: Settings, origin: Origin | None = None) -> None:
        self.settings = settings
        self.root_real = os.path.realpath(settings.media_root)
        self.origin = origin or open_origin(settings)
        self.keys = KeyRing(settings.signing_keys_dir, settings.signing_active_key_id)
        self.jwt = JwtVerifier.from_settings(settings)
        self.uploads = open_upload_store(settings, self.root_real)
        self.tus = (
            tus.TusEndpoint(settings, self.uploads, self.jwt, self.keys)
            if self.uploads is not None
            else None
        )
        self.draining = False

    def begin(self, route: str, headers: Mapping[str, str]) -> RequestContext:
        """The request id and traceparent the data plane assigned (made here if absent)."""
        if route != metrics.NOT_IN_FLIGHT:
            metrics.IN_FLIGHT.inc()
        request_id = headers.get("x-request-id") or secrets.token_hex(8)
        traceparent = headers.get("traceparent") or (
            f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
        )
        return RequestContext(
            time.perf_counter(), request_id, traceparent, {"X-Request-Id": request_id}
        )

    def record(
        self,
        ctx: RequestContext,
        route: str,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        sent: int,
    ) -> None:
        """Metrics and the access-log line of a finished request."""
        if route != metrics.NOT_IN_FLIGHT:
            metrics.IN_FLIGHT.dec()
        elapsed = time.perf_counter() - ctx.started
        labels = (route, metrics.method_label(method), metrics.status_class(status))
        metrics.child(metrics.REQUESTS, *labels).inc()
        metrics.child(metrics.DURATION, route).observe(elapsed)
        if sent:
            metrics.child(metrics.RESPONSE_BYTES, route).inc(sent)
        if self.settings.access_log:
            logs.access(
                method=method,
                path=signing.loggable(path),
                status=status,
                bytes=sent,
                duration_ms=round(elapsed * 1000, 3),
                range=headers.get("range"),
                remote=headers.get("x-vod-remote") or None,
                user_agent=headers.get("user-agent"),
                request_id=ctx.request_id,
                traceparent=ctx.traceparent,
            )

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        """The aiohttp entry point: every request the data plane proxies."""
        path = request.path
        route = route_of(path)
        ctx = self.begin(route, request.headers)
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await self._dispatch(request, route, path, ctx)
            status = response.status
            return response
        except asyncio.CancelledError:  # the client went away, or the shutdown deadline
            status = CLIENT_CLOSED
            raise
        except Exception:
            logging.getLogger("vod_stream").exception(
                "unhandled error", extra={"fields": {"request_id": ctx.request_id}}
            )
            response = json_error(500, "internal error", ctx.headers)
            return response
        finally:
            sent = 0
            if isinstance(response, web.Response) and isinstance(response.body, bytes):
                sent = len(response.body)
            self.record(ctx, route, request.method, path, status, request.headers, sent)

    async def _dispatch(
        self, request: BaseRequest, route: str, path: str, ctx: RequestContext
    ) -> web.StreamResponse:
        method = request.method
        headers = ctx.headers
        if route == "tus":
            if self.tus is None:
                message = "the HTTP origin is read-only: no resumable uploads (tus)"
                return json_error(405, message, {**headers, "Allow": ""})
            return await self.tus.handle(request, path, headers)
        if route not in ("media", "admin", "player"):
            if method not in ("GET", "HEAD"):
                return json_error(
                    405, f"{method} is not allowed here", {**headers, "Allow": "GET, HEAD"}
                )
            return self._operational(route, headers)
        if route == "admin":
            return await self._admin(request, path, headers)
        if route == "player":
            return player.respond(request.method, path, headers)
        relative = media_path(path)
        if relative is None or method in ("GET", "HEAD"):  # media reads: the data plane's
            return json_error(404, "not found", headers)
        if method in ("PUT", "DELETE"):
            try:
                self.jwt.verify(request.headers.get("Authorization"))
            except AuthError as exc:
                return json_error(exc.status, exc.message, _challenge(headers, exc.status))
            if method == "PUT":
                return await uploads.put(request, relative, self.settings, self.origin, headers)
            return await uploads.delete(relative, self.origin, headers)
        return json_error(405, f"{method} is not allowed", {**headers, "Allow": MEDIA_METHODS})

    def _operational(self, route: str, headers: Mapping[str, str]) -> web.StreamResponse:
        if route == "ping":
            return json_response({"message": "pong"}, headers=headers)
        if route == "healthz":
            return json_response({"status": "ok"}, headers=headers)
        if route == "readyz":
            if self.draining:
                return json_response({"status": "draining"}, 503, headers)
            if not self.origin.ready():
                return json_response({"status": "media root unavailable"}, 503, headers)
            return json_response({"status": "ready"}, headers=headers)
        body, ctype = metrics.exposition()  # the data plane appends its own series
        return web.Response(body=body, headers={**headers, "Content-Type": ctype})

    async def _admin(
        self, request: BaseRequest, path: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        if path != ADMIN_SIGN:
            return json_error(404, "no such admin call", headers)
        if request.method != "POST":
            return json_error(405, "use POST", {**headers, "Allow": "POST"})
        try:
            self.jwt.verify(request.headers.get("Authorization"))
        except AuthError as exc:
            return json_error(exc.status, exc.message, _challenge(headers, exc.status))
        try:
            payload = await request.json()
            prefix = payload.get("prefix")
            target = str(payload["path"] if prefix is None else payload.get("path", ""))
            target = target or f"{prefix}master.m3u8"
            ttl = int(payload.get("ttl", self.settings.signed_url_ttl_seconds))
            ip = payload.get("ip")
            if not all(v is None or isinstance(v, str) for v in (ip, prefix)):
                raise TypeError("ip and prefix are strings")
        except (ValueError, KeyError, TypeError, AttributeError):
            return json_error(
                400, 'expected JSON {"path": "/a.mp4"} or {"prefix": "/assets/ns/name/"}', headers
            )
        active = self.keys.active()
        if active is None:
            return json_error(503, "no signing key is available", headers)
        exp = int(time.time()) + ttl
        try:
            if prefix is not None:
                return json_response(
                    _prefix_grant(prefix, target, exp, active, ip), headers=headers
                )
            params = signing.sign_params(target, exp, active[0], active[1], ip=ip)
        except (ValueError, TypeError) as exc:
            return json_error(400, str(exc), headers)
        return json_response(
            {"url": signing.signed_url("", target, params), **params}, headers=headers
        )


def _prefix_grant(
    prefix: str, target: str, exp: int, active: tuple[str, bytes], ip: str | None
) -> dict[str, object]:
    """What /admin/sign answers for a prefix: the token, and the URL and player page of
    ``target`` (default: the prefix's master playlist) carrying it."""
    if not target.startswith(prefix):
        raise ValueError("path must be under the prefix")
    token = signing.prefix_token(prefix, exp, active[0], active[1], ip=ip)
    url = signing.token_path(token, target)
    return {
        "url": url,
        "player": signing.player_path(url),
        "token": token,
        "prefix": prefix,
        "exp": exp,
        "kid": active[0],
    }


def open_upload_store(settings: Settings, root_real: str) -> UploadStore | None:
    """Where tus keeps its uploads: the origin itself (None for the read-only HTTP origin)."""
    if settings.origin == "file":
        return FileStore(root_real)
    if settings.origin == "s3":
        return S3Store(settings)
    return None


def route_of(path: str) -> str:
    """The ``route`` metric label of a path."""
    if path == tus.BASE or path.startswith(tus.BASE + "/"):
        return "tus"
    if path in ROUTES:
        return ROUTES[path]
    if path.startswith("/admin/"):
        return "admin"
    return "player" if path.startswith(player.PATHS) else "media"


def _challenge(headers: Mapping[str, str], status: int) -> dict[str, str]:
    if status == 401:
        return {**headers, "WWW-Authenticate": 'Bearer realm="vod-stream"'}
    return dict(headers)
