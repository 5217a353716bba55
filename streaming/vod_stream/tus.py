"""Resumable uploads: tus 1.0.0 core with the creation, creation-with-upload, termination,
expiration and checksum extensions, at ``/tus/`` (POST creates, ``/tus/<id>`` takes HEAD,
PATCH and DELETE; OPTIONS advertises what the server supports).

The state lives in the store (``vod_stream.tusstore``), shared by every replica: a client cut
off from one pod continues on another with its next HEAD and PATCH. A PATCH holds the upload's
lock in the store while it writes; one that finds it held waits up to
``VOD_TUS_LOCK_WAIT_SECONDS``, then gets 423. A PATCH whose body is cut keeps the bytes that
arrived (the client asks HEAD for the offset and goes on), unless it carried a checksum: then
nothing of it is kept: its digest is computed while the body streams into the store (nothing
is read back). Requests need a JWT (``Authorization: Bearer``) or an upload token
(``vod_stream.uploadtokens``) in the query string; the Location of an upload created with a
token carries the token, which must have been valid when the upload was created (a long upload
outlives its token; an idle one expires after ``VOD_TUS_EXPIRY_SECONDS``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.web_request import BaseRequest

from vod_stream import logs, metrics, uploadtokens
from vod_stream._dataplane import format_http_date, media_path
from vod_stream.auth import AuthError, JwtVerifier
from vod_stream.config import Settings
from vod_stream.errors import json_error
from vod_stream.keys import KeyRing
from vod_stream.storage import OriginError
from vod_stream.tusstore import (
    Locked,
    StorageError,
    UploadInfo,
    UploadSession,
    UploadStatus,
    UploadStore,
    new_id,
)
from vod_stream.uploads import NO_SPACE, UploadFailed, body_chunks

VERSION = "1.0.0"
BASE = "/tus"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
PATCH_TYPE = "application/offset+octet-stream"
CHECKSUM_MISMATCH = 460
NO_CREDENTIALS = "a bearer token (JWT) or an upload token (path, exp, kid, sig) is required"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vod-stream"'}


class Hasher(Protocol):
    """What ``hashlib`` hands out: fed chunk by chunk, read once."""

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class BadRequest(Exception):
    """A tus header that cannot be used: answered 400 with this message."""


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value optional)."""
    result: dict[str, str] = {}
    for pair in (value or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not key or " " in encoded.strip() or key in result:
            raise BadRequest(f"Upload-Metadata: bad pair {pair[:40]!r}")
        try:
            result[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata: {key} is not base64 of UTF-8 text") from None
    return result


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>`` (400 for an unsupported algorithm)."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: unsupported algorithm {algorithm!r}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("Upload-Checksum: the digest is not base64") from None
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise BadRequest(f"Upload-Checksum: not a {algorithm} digest")
    return algorithm, digest


def parse_count(name: str, value: str | None) -> int:
    """A non-negative integer header (``Upload-Length``, ``Upload-Offset``)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 19:
        raise BadRequest(f"{name}: expected a non-negative integer")
    return int(value)


def upload_id_of(path: str) -> str | None:
    """``/tus/<id>`` -> id; ``/tus`` and ``/tus/`` -> ""; anything else -> None."""
    rest = path[len(BASE) :]
    if rest in ("", "/"):
        return ""
    if rest.startswith("/") and "/" not in rest[1:]:
        return rest[1:]
    return None


class TusEndpoint:
    """The tus protocol over an ``UploadStore``."""

    def __init__(
        self, settings: Settings, store: UploadStore, jwt: JwtVerifier, keys: KeyRing
    ) -> None:
        self.settings = settings
        self.store = store
        self.jwt = jwt
        self.keys = keys

    def _headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {**headers, "Tus-Resumable": VERSION, "Cache-Control": "no-store"}

    async def _expires(self, upload_id: str) -> str:
        return self._expiry(await self.store.last_activity(upload_id))

    def _expiry(self, last_activity: float) -> str:
        """``Upload-Expires`` of an upload last active at ``last_activity``."""
        return format_http_date(int(last_activity + self.settings.tus_expiry_seconds))

    async def handle(
        self, request: BaseRequest, path: str, base_headers: Mapping[str, str]
    ) -> web.StreamResponse:
        headers = self._headers(base_headers)
        upload_id = upload_id_of(path)
        method = request.headers.get("X-HTTP-Method-Override", request.method).upper()
        if upload_id is None:
            return json_error(404, "not found", headers)
        if method == "OPTIONS":
            return self._options(headers)
        if request.headers.get("Tus-Resumable") != VERSION:
            return json_error(412, f"Tus-Resumable: {VERSION} is required", _version(headers))
        try:
            if upload_id == "":
                if method != "POST":
                    return _not_allowed(method, "POST, OPTIONS", headers)
                return await self._create(request, headers)
            if method not in ("HEAD", "PATCH", "DELETE"):
                return _not_allowed(method, "HEAD, PATCH, DELETE, OPTIONS", headers)
            found = await self.store.status(upload_id)
            if found is None:
                return json_error(404, "no such upload", headers)
            info = found.info
            refused = self._authorize(request, info.target, headers, valid_at=info.created)
            if refused is not None:
                return refused
            if found.last_activity + self.settings.tus_expiry_seconds < time.time():
                return json_error(410, "the upload expired", headers)
            if method == "HEAD":
                return self._head(found, headers)
            if method == "DELETE":
                await self.store.terminate(upload_id)
                logs.event("upload terminated", upload=upload_id, path="/" + info.target)
                return web.Response(status=204, headers=headers)
            return await self._patch(request, info, headers)
        except BadRequest as exc:
            return json_error(400, str(exc), headers)
        except OriginError as exc:  # the S3 store failed or refused
            return json_error(exc.status, exc.message, headers)

    def _options(self, headers: dict[str, str]) -> web.StreamResponse:
        return web.Response(
            status=204,
            headers={
                **_version(headers),
                "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": str(self.settings.max_upload_bytes),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
            },
        )

    def _authorize(
        self,
        request: BaseRequest,
        target: str,
        headers: dict[str, str],
        valid_at: float | None = None,
    ) -> web.StreamResponse | None:
        """None when the request may act on ``target``: a valid JWT (any target), else an
        upload token for exactly this target, valid at ``valid_at`` (the upload's creation:
        a token that created an upload continues it until the upload itself expires)."""
        if "Authorization" in request.headers:
            try:
                self.jwt.verify(request.headers.get("Authorization"))
            except AuthError as exc:
                extra = (
                    {"WWW-Authenticate": 'Bearer realm="vod-stream"'} if exc.status == 401 else {}
                )
                return json_error(exc.status, exc.message, {**headers, **extra})
            return None
        allowed, reason = uploadtokens.check(request.query, self.keys.get, valid_at)
        if allowed is None:
            if "sig" not in request.query:
                return json_error(401, NO_CREDENTIALS, {**headers, **CHALLENGE})
            return json_error(403, reason, headers)
        if allowed != target:
            return json_error(403, "the upload token is for another path", headers)
        return None

    async def _create(self, request: BaseRequest, headers: dict[str, str]) -> web.StreamResponse:
        if "Authorization" not in request.headers and "sig" not in request.query:
            return json_error(401, NO_CREDENTIALS, {**headers, **CHALLENGE})
        if "Upload-Defer-Length" in request.headers:
            raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length")
        length = parse_count("Upload-Length", request.headers.get("Upload-Length"))
        if length > self.settings.max_upload_bytes:
            refused = json_error(
                413, f"Upload-Length is above {self.settings.max_upload_bytes}", headers
            )
            refused.force_close()
            return refused
        raw = request.headers.get("Upload-Metadata", "")
        metadata = parse_metadata(raw)
        scoped = "Authorization" not in request.headers
        token_target = request.query.get("path", "").lstrip("/") if scoped else ""
        target = (token_target or metadata.get("path", "")).lstrip("/")
        if not target or media_path("/" + target) is None:
            raise BadRequest("a target path (Upload-Metadata path, or the token's) is required")
        if scoped and metadata.get("path", target).lstrip("/") != target:
            return json_error(403, "the upload token is for another path", headers)
        denied = self._authorize(request, target, headers)
        if denied is not None:
            return denied
        upload_id = new_id()
        info = UploadInfo(upload_id, length, target, metadata, raw, time.time(), scoped)
        try:
            await self.store.create(info)
        except OSError as exc:
            status = 507 if exc.errno in NO_SPACE else 500
            return json_error(status, f"cannot create the upload: {exc.strerror}", headers)
        location = f"{BASE}/{upload_id}"
        if scoped:
            location += "?" + urlencode(uploadtokens.query(request.query), safe="/")
        logs.event("upload created", upload=upload_id, path="/" + target, length=length)
        headers = {**headers, "Location": location}
        has_body = request.body_exists and request.content_type == PATCH_TYPE
        if has_body or length == 0:
            response = await self._write(request, info, 0, headers)
            if response.status != 204:
                return response
            headers = {**headers, "Upload-Offset": response.headers["Upload-Offset"]}
        headers["Upload-Expires"] = await self._expires(upload_id)
        return web.Response(status=201, headers=headers)

    def _head(self, found: UploadStatus, headers: dict[str, str]) -> web.StreamResponse:
        info = found.info
        extra = {
            "Upload-Offset": str(found.offset),
            "Upload-Length": str(info.length),
            "Upload-Expires": self._expiry(found.last_activity),
        }
        if info.raw_metadata:
            extra["Upload-Metadata"] = info.raw_metadata
        return web.Response(status=200, headers={**headers, **extra})

    async def _patch(
        self, request: BaseRequest, info: UploadInfo, headers: dict[str, str]
    ) -> web.StreamResponse:
        if request.content_type != PATCH_TYPE:
            return json_error(415, f"Content-Type must be {PATCH_TYPE}", headers)
        offset = parse_count("Upload-Offset", request.headers.get("Upload-Offset"))
        return await self._write(request, info, offset, headers)

    async def _write(
        self, request: BaseRequest, info: UploadInfo, offset: int, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Append the body at ``offset`` with the upload's lock held."""
        checksum = parse_checksum(request.headers.get("Upload-Checksum"))
        declared = request.content_length
        if declared is not None and offset + declared > info.length:
            refused = json_error(413, f"the upload is {info.length} bytes long", headers)
            refused.force_close()
            return refused
        try:
            async with self.store.session(info.id, self.settings.tus_lock_wait_seconds) as session:
                if session.offset != offset:
                    response = json_error(
                        409, f"Upload-Offset is {session.offset}, not {offset}", headers
                    )
                    response.headers["Upload-Offset"] = str(session.offset)
                    return response
                if session.offset < info.length:
                    status, message = await self._append(request, session, info, checksum)
                elif request.content_length:
                    status, message = 413, f"the upload is {info.length} bytes long"
                else:  # complete already, or its completion failed before: try it again
                    status, message = 204, ""
                if status == 204 and session.offset == info.length and not session.completed:
                    await session.complete()
                    metrics.UPLOAD_BYTES.inc(info.length)
                    logs.event("upload completed", upload=info.id, path="/" + info.target)
                done = {**headers, "Upload-Offset": str(session.offset)}
        except Locked:
            return json_error(423, "another request is writing this upload: retry", headers)
        except FileNotFoundError:
            return json_error(404, "no such upload", headers)
        except StorageError as exc:  # the target cannot be replaced: an empty PATCH retries
            offset_now = {"Upload-Offset": str(await self.store.offset(info.id))}
            return json_error(409, str(exc), {**headers, **offset_now})
        except OSError as exc:
            metrics.UPLOAD_FAILURES.labels("no_space" if exc.errno in NO_SPACE else "error").inc()
            status = 507 if exc.errno in NO_SPACE else 500
            return json_error(status, f"cannot store the upload: {exc.strerror}", headers)
        if status != 204:
            response = json_error(status, message, done)
            if status in (408, 413):
                response.force_close()  # the rest of the body is not read
            return response
        done["Upload-Expires"] = await self._expires(info.id)
        return web.Response(status=204, headers=done)

    async def _append(
        self,
        request: BaseRequest,
        session: UploadSession,
        info: UploadInfo,
        checksum: tuple[str, bytes] | None,
    ) -> tuple[int, str]:
        """Receive the body into the session: (204, "") or the status and why not. With a
        checksum the body is hashed as it streams in and kept only when the digest matches."""
        start = session.offset
        hasher = CHECKSUMS[checksum[0]]() if checksum is not None else None
        if checksum is not None:
            session.begin_unverified()
        if request.headers.get("Expect", "").lower() == "100-continue":  # curl, above 1 MiB
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            await _receive(
                request, session, hasher, info.length - start, self.settings.body_timeout_seconds
            )
        except UploadFailed as failure:
            metrics.UPLOAD_FAILURES.labels(failure.reason).inc()
            logs.event(
                "upload patch cut", upload=info.id, reason=failure.reason, offset=session.offset
            )
            if checksum is not None or failure.reason in ("too_large", "no_space"):
                await session.rollback(start)
            else:
                await session.commit()
            return failure.status, failure.message
        except BaseException:  # cancelled: keep what arrived, unless it must be verified
            if checksum is not None:
                await session.rollback(start)
            else:
                await session.commit()
            raise
        if checksum is not None and hasher is not None and hasher.digest() != checksum[1]:
            await session.rollback(start)
            metrics.UPLOAD_FAILURES.labels("checksum").inc()
            return CHECKSUM_MISMATCH, f"the {checksum[0]} checksum does not match"
        await session.commit()
        return 204, ""


async def _receive(
    request: BaseRequest,
    session: UploadSession,
    hasher: Hasher | None,
    limit: int,
    stall_seconds: float,
) -> None:
    """Append the body to the session as it arrives, hashing it on the way. UploadFailed as
    ``body_chunks`` says, and 507 ``no_space`` when the store is full."""
    async for chunk in body_chunks(request, limit, stall_seconds):
        if hasher is not None:
            hasher.update(chunk)
        try:
            await session.append(chunk)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise UploadFailed(507, "no_space", "no space left to store the file") from None
            raise


def _version(headers: Mapping[str, str]) -> dict[str, str]:
    return {**headers, "Tus-Version": VERSION}


def _not_allowed(method: str, allow: str, headers: dict[str, str]) -> web.StreamResponse:
    return json_error(405, f"{method} is not allowed here", {**headers, "Allow": allow})


async def remove_expired(store: UploadStore, settings: Settings) -> int:
    """One cleanup round: remove the uploads idle longer than ``VOD_TUS_EXPIRY_SECONDS``."""
    removed = await store.remove_expired(settings.tus_expiry_seconds)
    if removed:
        logs.event("removed expired uploads", count=removed)
    return removed


async def expire_periodically(store: UploadStore, settings: Settings) -> None:
    """The cleanup, at start and then every ``VOD_TUS_CLEANUP_SECONDS`` (each replica; they do
    not conflict: an upload is removed only with its lock held)."""
    while True:
        try:
            await remove_expired(store, settings)
        except (OSError, OriginError) as exc:
            logs.event("upload cleanup failed", error=str(exc))
        await asyncio.sleep(settings.tus_cleanup_seconds)
