"""JWT bearer tokens for writes and admin calls (PyJWT, explicit algorithm list).

HS256 with a shared secret and/or RS256/ES256 with a PEM public key. ``exp`` is required;
``nbf``, ``iat``, ``iss`` and ``aud`` are checked when present or configured, with a leeway
for clock skew. With no key configured every write is refused, never allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from vod_stream.config import Settings

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class JwtVerifier:
    secret: bytes | None
    public_key: Any | None
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None
    leeway: float

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier:
        secret: bytes | None = None
        if settings.jwt_secret:
            secret = settings.jwt_secret.encode()
        elif settings.jwt_secret_file is not None:
            secret = _read(settings.jwt_secret_file).rstrip(b"\r\n")
        public_key = None
        if settings.jwt_public_key_file is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            public_key = load_pem_public_key(_read(settings.jwt_public_key_file))
        algorithms = settings.jwt_algorithms
        if not algorithms:
            algorithms = (("HS256",) if secret else ()) + (
                ("RS256", "ES256") if public_key is not None else ()
            )
        return cls(
            secret,
            public_key,
            algorithms,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_leeway_seconds,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.algorithms) and (self.secret is not None or self.public_key is not None)

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or AuthError (401 bad/missing token, 403 writes disabled)."""
        if not self.enabled:
            raise AuthError(403, "writes are disabled: no JWT key is configured")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "a bearer token is required (Authorization: Bearer <JWT>)")
        token = token.strip()
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        if algorithm not in self.algorithms:
            raise AuthError(401, f"invalid token: algorithm {algorithm!r} is not accepted")
        key = self.secret if algorithm in HMAC_ALGORITHMS else self.public_key
        if key is None:
            raise AuthError(401, f"invalid token: no key for algorithm {algorithm!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        return claims


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
