"""A VideoAsset whose source is uploaded (spec.source.upload): its target path, the upload URL
with a short-lived upload token, and whether the upload has completed.

The operator signs the token itself with the platform's signing key (the Secret it generated,
or spec.security.signedUrls.secretName): no call to the platform is needed to hand out an
upload URL, the key never leaves the cluster's Secrets, and the pods verify the token with the
key they already mount. The token format is vod-stream's (``vod_stream.uploadtokens``): the
signed-URL HMAC-SHA256 of the path ``/.upload/<target>`` (a unit test checks both sides agree;
the operator does not import the streaming core).

Completion is read from the platform: the object appears at its target only when the last byte
arrived (vod-stream renames it into place on the file origin and completes its multipart upload
on S3: either way it appears whole, at once), so a HEAD of the target through the streaming
Service answering 200 means Uploaded. That HEAD is signed the same way when signed URLs are on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

UPLOAD_SCOPE = "/.upload/"
TUS_PATH = "/tus/"
PROBE_TIMEOUT_SECONDS = 3.0


def target(asset: Mapping[str, Any]) -> str:
    """Where the upload is stored, relative to the storage root."""
    meta = asset["metadata"]
    upload = asset["spec"]["source"].get("upload") or {}
    return str(upload.get("path") or f"uploads/{meta['namespace']}/{meta['name']}")


def signature(key: bytes, path: str, exp: int) -> str:
    """vod-stream's signed-URL signature of one path (no client IP): base64url HMAC-SHA256."""
    message = f"vod1\npath\n{path}\n{exp}\n".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signing_key(secret_data: Mapping[str, str]) -> tuple[str, bytes] | None:
    """The key vod-stream signs with by default (the last key id in sorted order), decoded
    from a Secret's base64 data; None when there is none."""
    if not secret_data:
        return None
    key_id = sorted(secret_data)[-1]
    return key_id, base64.b64decode(secret_data[key_id])


def token(path: str, exp: int, key_id: str, key: bytes) -> dict[str, str]:
    """The query parameters of an upload token for ``path``."""
    scoped = UPLOAD_SCOPE + path.lstrip("/")
    return {"path": path, "exp": str(exp), "kid": key_id, "sig": signature(key, scoped, exp)}


def upload_status(endpoint: str, path: str, exp: int, key_id: str, key: bytes) -> dict[str, str]:
    """``status.upload``: the tus creation URL with its token, the target, the expiry."""
    params = token(path, exp, key_id, key)
    return {
        "url": f"{endpoint}{TUS_PATH}?{urlencode(params, safe='/')}",
        "path": path,
        "expiresAt": datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def still_valid(previous: Mapping[str, Any], path: str, now: float, ttl: int) -> bool:
    """The token in ``previous`` (status.upload) is for ``path`` and has over half its life."""
    if previous.get("path") != path or not previous.get("url"):
        return False
    try:
        expires = datetime.strptime(str(previous["expiresAt"]), "%Y-%m-%dT%H:%M:%SZ")
    except (KeyError, ValueError):
        return False
    return expires.replace(tzinfo=UTC).timestamp() - now > ttl / 2


def probe_url(endpoint: str, path: str, exp: int, key: tuple[str, bytes] | None) -> str:
    """The URL of a HEAD that finds the uploaded object (signed when a key is given)."""
    url = f"{endpoint}/{quote(path)}"
    if key is None:
        return url
    params = {"exp": str(exp), "kid": key[0], "sig": signature(key[1], "/" + path, exp)}
    return f"{url}?{urlencode(params)}"


def probe(url: str) -> bool | None:
    """True when the object is there (200), False when not (404), None when unknown."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return False if exc.code == 404 else None
    except (urllib.error.URLError, OSError):
        return None
