"""The HTTP application: routing, access logs, metrics, CORS and signatures around handlers.

Built on aiohttp's low-level server (no router or middleware chain on the hot path): one
``handle`` coroutine dispatches by path and method.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream import logs, metrics, signing, uploads
from vod_stream.auth import AuthError, JwtVerifier
from vod_stream.config import Settings
from vod_stream.cors import Cors
from vod_stream.errors import json_error, json_response
from vod_stream.keys import KeyRing
from vod_stream.mediatypes import content_type
from vod_stream.paths import media_path, open_regular_file
from vod_stream.plan import Conditions, Representation, decide
from vod_stream.preconditions import make_etag
from vod_stream.ranges import RangeKind
from vod_stream.sender import send_plan
from vod_stream.tracing import request_id_for, traceparent_for

ROUTES = {"/ping": "ping", "/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics"}
ADMIN_SIGN = "/admin/sign"
MEDIA_METHODS = "GET, HEAD, PUT, DELETE, OPTIONS"


class StreamApp:
    """State shared by the requests of one worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root_real = os.path.realpath(settings.media_root)
        self.keys = KeyRing(settings.signing_keys_dir, settings.signing_active_key_id)
        self.jwt = JwtVerifier.from_settings(settings)
        self.cors = Cors(settings.cors_allowed_origins)
        self.draining = False

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.path
        route = ROUTES.get(path) or ("admin" if path.startswith("/admin/") else "media")
        request_id = request_id_for(request.headers.get("X-Request-Id"))
        traceparent = traceparent_for(request.headers.get("traceparent"))
        headers = {"X-Request-Id": request_id}
        headers.update(self.cors.response_headers(request.headers.get("Origin")))
        sent = [0]

        def count(n: int) -> None:
            sent[0] += n

        metrics.IN_FLIGHT.inc()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await self._dispatch(request, route, path, headers, count)
            if self.draining:
                response.force_close()
            status = response.status
            return response
        except Exception:
            logging.getLogger("vod_stream").exception(
                "unhandled error", extra={"fields": {"request_id": request_id}}
            )
            response = json_error(500, "internal error", headers)
            return response
        finally:
            metrics.IN_FLIGHT.dec()
            if isinstance(response, web.Response) and isinstance(response.body, bytes):
                count(len(response.body))
            elapsed = time.perf_counter() - started
            status_class = metrics.status_class(status)
            metrics.child(metrics.REQUESTS, route, request.method, status_class).inc()
            metrics.child(metrics.DURATION, route).observe(elapsed)
            if sent[0]:
                metrics.child(metrics.RESPONSE_BYTES, route).inc(sent[0])
            if self.settings.access_log:
                logs.access(
                    method=request.method,
                    path=path,
                    status=status,
                    bytes=sent[0],
                    duration_ms=round(elapsed * 1000, 3),
                    range=request.headers.get("Range"),
                    remote=request.remote,
                    user_agent=request.headers.get("User-Agent"),
                    request_id=request_id,
                    traceparent=traceparent,
                )

    async def _dispatch(
        self,
        request: BaseRequest,
        route: str,
        path: str,
        headers: dict[str, str],
        count: Any,
    ) -> web.StreamResponse:
        method = request.method
        if method == "OPTIONS":
            return self._options(request, headers)
        if route != "media" and route != "admin":
            if method not in ("GET", "HEAD"):
                return json_error(
                    405, f"{method} is not allowed here", {**headers, "Allow": "GET, HEAD"}
                )
            return self._operational(route, headers)
        if route == "admin":
            return await self._admin(request, path, headers)
        relative = media_path(path)
        if relative is None:
            return json_error(404, "not found", headers)
        if method in ("GET", "HEAD"):
            return await self._serve(request, relative, headers, count)
        if method in ("PUT", "DELETE"):
            try:
                self.jwt.verify(request.headers.get("Authorization"))
            except AuthError as exc:
                return json_error(exc.status, exc.message, _challenge(headers, exc.status))
            if method == "PUT":
                return await uploads.put(request, relative, self.settings, self.root_real, headers)
            return uploads.delete(relative, self.root_real, headers)
        return json_error(405, f"{method} is not allowed", {**headers, "Allow": MEDIA_METHODS})

    def _operational(self, route: str, headers: Mapping[str, str]) -> web.StreamResponse:
        if route == "ping":
            return json_response({"message": "pong"}, headers=headers)
        if route == "healthz":
            return json_response({"status": "ok"}, headers=headers)
        if route == "readyz":
            if self.draining:
                return json_response({"status": "draining"}, 503, headers)
            if not os.path.isdir(self.root_real):
                return json_response({"status": "media root unavailable"}, 503, headers)
            return json_response({"status": "ready"}, headers=headers)
        body, ctype = metrics.exposition()
        return web.Response(body=body, headers={**headers, "Content-Type": ctype})

    def _options(self, request: BaseRequest, headers: Mapping[str, str]) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        wanted = request.headers.get("Access-Control-Request-Method")
        if origin and wanted and self.cors.enabled:
            preflight = self.cors.preflight_headers(origin, wanted)
            if preflight is None:
                return json_error(403, "CORS preflight refused for this origin or method")
            return web.Response(
                status=204, headers={"X-Request-Id": headers["X-Request-Id"], **preflight}
            )
        return web.Response(status=204, headers={**headers, "Allow": MEDIA_METHODS})

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
            target = str(payload["path"])
            ttl = int(payload.get("ttl", self.settings.signed_url_ttl_seconds))
            ip = payload.get("ip")
            prefix = payload.get("prefix")
        except (ValueError, KeyError, TypeError, AttributeError):
            return json_error(400, 'expected JSON {"path": "/a.mp4", "ttl": 3600}', headers)
        active = self.keys.active()
        if active is None:
            return json_error(503, "no signing key is available", headers)
        try:
            params = signing.sign_params(
                target, int(time.time()) + ttl, active[0], active[1], ip=ip, prefix=prefix
            )
        except ValueError as exc:
            return json_error(400, str(exc), headers)
        return json_response(
            {"url": signing.signed_url("", target, params), **params}, headers=headers
        )

    async def _serve(
        self, request: BaseRequest, relative: str, headers: dict[str, str], count: Any
    ) -> web.StreamResponse:
        if self.settings.signed_urls:
            refusal = signing.verify(
                request.path, request.query, self.keys.get, time.time(), self._signed_ip(request)
            )
            if refusal is not None:
                return json_error(403, refusal, headers)
        opened = open_regular_file(self.root_real, relative)
        if opened is None:
            return json_error(404, "not found", headers)
        info = opened.stat
        with io.FileIO(opened.fd, "rb") as file:
            rep = Representation(
                size=info.st_size,
                mtime=int(info.st_mtime),
                etag=make_etag(info.st_ino, info.st_size, info.st_mtime_ns),
                content_type=content_type(relative),
            )
            get = request.headers.get
            cond = Conditions(
                method=request.method,
                range=get("Range"),
                if_range=get("If-Range"),
                if_match=get("If-Match"),
                if_none_match=get("If-None-Match"),
                if_modified_since=get("If-Modified-Since"),
                if_unmodified_since=get("If-Unmodified-Since"),
            )
            plan = decide(
                cond, rep, max_ranges=self.settings.max_ranges, boundary=secrets.token_hex(12)
            )
            if plan.kind is not RangeKind.NONE:
                metrics.child(metrics.RANGE_REQUESTS, plan.kind.value).inc()
            if plan.error is not None:
                return json_error(plan.status, plan.error, {**headers, **plan.headers})
            return await send_plan(request, plan, file, headers, count)

    def _signed_ip(self, request: BaseRequest) -> str | None:
        if not self.settings.signed_url_bind_ip:
            return None
        return client_ip(request, self.settings.client_ip_header)


def client_ip(request: BaseRequest, header: str | None) -> str | None:
    """The client's IP: the first entry of the configured header, else the peer address."""
    if header:
        value = request.headers.get(header)
        if value:
            return value.split(",")[0].strip()
    return request.remote


def _challenge(headers: Mapping[str, str], status: int) -> dict[str, str]:
    if status == 401:
        return {**headers, "WWW-Authenticate": 'Bearer realm="vod-stream"'}
    return dict(headers)
