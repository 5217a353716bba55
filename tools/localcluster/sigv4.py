"""AWS Signature Version 4 for the few S3 calls the test server's admin side makes.

The streaming core talks to S3 through its client library (obstore); this signer serves only
the calls that library does not offer and a test needs: CreateBucket with an ACL,
ListMultipartUploads, ListObjectsV2. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _encode(text: str, safe: str) -> str:
    return quote(text, safe=safe)


def canonical_query(query: Mapping[str, str]) -> str:
    """Keys and values percent-encoded (RFC 3986 unreserved kept), sorted by key."""
    pairs = sorted((_encode(k, "-_.~"), _encode(v, "-_.~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived key: HMAC chain over date, region, service and `aws4_request`."""
    key = _hmac(("AWS4" + secret_key).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def sign(
    method: str,
    url: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str = "s3",
    payload_sha256: str | None = EMPTY_SHA256,
    now: datetime | None = None,
) -> dict[str, str]:
    """`headers` plus Host, X-Amz-Date (and X-Amz-Content-Sha256 unless `payload_sha256` is
    None, for non-S3 services) and the Authorization header; every header given is signed."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    parts = urlsplit(url)
    signed: dict[str, str] = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = moment
    if payload_sha256 is not None:
        signed["x-amz-content-sha256"] = payload_sha256
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            _encode(parts.path or "/", "/-_.~"),
            canonical_query(query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256 or EMPTY_SHA256,
        ]
    )
    scope = f"{moment[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, moment, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(
        signing_key(secret_key, moment[:8], region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    signed["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed
