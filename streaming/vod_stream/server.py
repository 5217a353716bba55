"""The HTTP application: routing, access logs, metrics, CORS and signatures around handlers.

Built on aiohttp's low-level server (no router or middleware chain on the hot path): one
``handle`` coroutine dispatches by path and method.
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

from vod_stream import logs, metrics, signing, uploads
from vod_stream.auth import AuthError, JwtVerifier
from vod_stream.config import Settings
from vod_stream.cors import Cors
from vod_stream.errors import error_body, json_error, json_response
from vod_stream.filecache import OpenFiles, SharedFile
from vod_stream.keys import KeyRing
from vod_stream.mediatypes import content_type
from vod_stream.paths import media_path
from vod_stream.plan import Conditions, Plan, Representation, decide
from vod_stream.preconditions import make_etag
from vod_stream.ranges import RangeKind
from vod_stream.sender import CLIENT_CLOSED, ResponseCut, send_plan
from vod_stream.tracing import request_id_for, traceparent_for

ROUTES = {"/ping": "ping", "/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics"}
ADMIN_SIGN = "/admin/sign"
MEDIA_METHODS = "GET, HEAD, PUT, DELETE, OPTIONS"


@dataclass(slots=True)
class RequestContext:
    """Per-request observability state."""

    started: float
    request_id: str
    traceparent: str
    headers: dict[str, str]  # sent with every response: X-Request-Id, CORS
    sent: int = 0

    def count(self, n: int) -> None:
        self.sent += n


@dataclass(slots=True)
class MediaAnswer:
    """A planned file response, or an error to send as JSON."""

    status: int
    headers: Mapping[str, str]
    plan: Plan | None = None
    file: SharedFile | None = None
    body: bytes = b""

    @classmethod
    def error(
        cls, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> MediaAnswer:
        return cls(status, headers or {}, body=error_body(status, message))


class StreamApp:
    """State shared by the requests of one worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root_real = os.path.realpath(settings.media_root)
        self.keys = KeyRing(settings.signing_keys_dir, settings.signing_active_key_id)
        self.jwt = JwtVerifier.from_settings(settings)
        self.cors = Cors(settings.cors_allowed_origins)
        self.files = OpenFiles(self.root_real)
        self.draining = False

    def begin(self, headers: Mapping[str, str]) -> RequestContext:
        """Identify a request (id, traceparent) and the headers every response carries."""
        metrics.IN_FLIGHT.inc()
        request_id = request_id_for(headers.get("x-request-id"))
        extra = {"X-Request-Id": request_id}
        extra.update(self.cors.response_headers(headers.get("origin")))
        return RequestContext(
            time.perf_counter(), request_id, traceparent_for(headers.get("traceparent")), extra
        )

    def record(
        self,
        ctx: RequestContext,
        route: str,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        remote: str | None,
    ) -> None:
        """Metrics and the access-log line of a finished request."""
        metrics.IN_FLIGHT.dec()
        elapsed = time.perf_counter() - ctx.started
        labels = (route, metrics.method_label(method), metrics.status_class(status))
        metrics.child(metrics.REQUESTS, *labels).inc()
        metrics.child(metrics.DURATION, route).observe(elapsed)
        if ctx.sent:
            metrics.child(metrics.RESPONSE_BYTES, route).inc(ctx.sent)
        if self.settings.access_log:
            logs.access(
                method=method,
                path=path,
                status=status,
                bytes=ctx.sent,
                duration_ms=round(elapsed * 1000, 3),
                range=headers.get("range"),
                remote=remote,
                user_agent=headers.get("user-agent"),
                request_id=ctx.request_id,
                traceparent=ctx.traceparent,
            )

    def send_timed_out(self, ctx: RequestContext, path: str) -> None:
        """Log and count a response cut by the send timeout."""
        metrics.SEND_TIMEOUTS.inc()
        logs.event(
            "send timeout",
            request_id=ctx.request_id,
            path=path,
            bytes=ctx.sent,
            seconds=self.settings.send_timeout_seconds,
        )

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        """The aiohttp entry point (every request the fast path does not take)."""
        path = request.path
        route = route_of(path)
        ctx = self.begin(request.headers)
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await self._dispatch(request, route, path, ctx)
            if self.draining:
                response.force_close()
            status = response.status
            return response
        except ResponseCut as cut:  # the client went away or stopped reading: not a 5xx
            status = CLIENT_CLOSED
            if cut.timed_out:
                self.send_timed_out(ctx, path)
            response = cut.response
            return response
        except asyncio.CancelledError:  # the shutdown grace deadline: not taken in full either
            status = CLIENT_CLOSED
            raise
        except Exception:
            logging.getLogger("vod_stream").exception(
                "unhandled error", extra={"fields": {"request_id": ctx.request_id}}
            )
            response = json_error(500, "internal error", ctx.headers)
            return response
        finally:
            if isinstance(response, web.Response) and isinstance(response.body, bytes):
                ctx.count(len(response.body))
            self.record(ctx, route, request.method, path, status, request.headers, request.remote)

    async def _dispatch(
        self, request: BaseRequest, route: str, path: str, ctx: RequestContext
    ) -> web.StreamResponse:
        method = request.method
        headers = ctx.headers
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
        if method in ("GET", "HEAD"):
            return await self._serve(request, path, ctx)
        relative = media_path(path)
        if relative is None:
            return json_error(404, "not found", headers)
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

    def media_answer(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        remote: str | None,
    ) -> MediaAnswer:
        """The answer to a GET/HEAD of media, without I/O beyond opening the file.

        ``headers`` is looked up with lower-case names (aiohttp's headers and the fast path's
        dict both answer those). The caller closes ``answer.file``.
        """
        relative = media_path(path)
        if relative is None:
            return MediaAnswer.error(404, "not found")
        if self.settings.signed_urls:
            ip = (
                client_ip(headers, remote, self.settings)
                if self.settings.signed_url_bind_ip
                else None
            )
            refusal = signing.verify(path, query, self.keys.get, time.time(), ip)
            if refusal is not None:
                return MediaAnswer.error(403, refusal)
        file = self.files.open(relative)
        if file is None:
            return MediaAnswer.error(404, "not found")
        answer: MediaAnswer | None = None
        try:
            answer = self._file_answer(file, relative, method, headers)
        finally:
            if answer is None or answer.file is None:
                file.close()  # an error answer or an exception: release the cache reference
        return answer

    def _file_answer(
        self, file: SharedFile, relative: str, method: str, headers: Mapping[str, str]
    ) -> MediaAnswer:
        """Decide the answer for an open file; it holds ``file`` only when it sends it."""
        info = file.stat
        rep = Representation(
            size=info.st_size,
            mtime=int(info.st_mtime),
            etag=make_etag(info.st_ino, info.st_size, info.st_mtime_ns),
            content_type=content_type(relative),
        )
        get = headers.get
        cond = Conditions(
            method=method,
            range=get("range"),
            if_range=get("if-range"),
            if_match=get("if-match"),
            if_none_match=get("if-none-match"),
            if_modified_since=get("if-modified-since"),
            if_unmodified_since=get("if-unmodified-since"),
        )
        plan = decide(
            cond,
            rep,
            max_ranges=self.settings.max_ranges,
            boundary=secrets.token_hex(12) if cond.range and "," in cond.range else "",
        )
        if plan.kind is not RangeKind.NONE:
            metrics.child(metrics.RANGE_REQUESTS, plan.kind.value).inc()
        if plan.error is not None:
            return MediaAnswer.error(plan.status, plan.error, plan.headers)
        return MediaAnswer(plan.status, plan.headers, plan=plan, file=file)

    async def _serve(
        self, request: BaseRequest, path: str, ctx: RequestContext
    ) -> web.StreamResponse:
        answer = self.media_answer(
            request.method, path, request.query, request.headers, request.remote
        )
        if answer.plan is None or answer.file is None:
            return web.Response(
                status=answer.status,
                body=answer.body,
                headers={**answer.headers, **ctx.headers, "Content-Type": "application/json"},
            )
        with answer.file:
            return await send_plan(
                request,
                answer.plan,
                answer.file,
                ctx.headers,
                ctx.count,
                self.settings.send_timeout_seconds,
            )


def client_ip(headers: Mapping[str, str], remote: str | None, settings: Settings) -> str | None:
    """The client's IP: the first entry of the configured header, else the peer address."""
    if settings.client_ip_header:
        value = headers.get(settings.client_ip_header.lower())
        if value:
            return value.split(",")[0].strip()
    return remote


def route_of(path: str) -> str:
    """The ``route`` metric label of a path."""
    return ROUTES.get(path) or ("admin" if path.startswith("/admin/") else "media")


def _challenge(headers: Mapping[str, str], status: int) -> dict[str, str]:
    if status == 401:
        return {**headers, "WWW-Authenticate": 'Bearer realm="vod-stream"'}
    return dict(headers)
