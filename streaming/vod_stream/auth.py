"""JWT bearer tokens for writes and admin calls (PyJWT, explicit algorithm list).

HS256 with a shared secret and/or a PEM public key, whose type decides the asymmetric
algorithms it verifies (RSA: RS256, and RS384/RS512/PS* when listed; EC: the ES algorithm of its
curve; Ed25519/Ed448: EdDSA). ``exp`` is required; ``nbf``, ``iat``, ``iss`` and ``aud`` are
checked when present or configured, with a leeway for clock skew. With no key configured every
write is refused, never allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from vod_stream.config import Settings

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def key_algorithms(public_key: object) -> tuple[str, ...]:
    """The algorithms that verify with ``public_key``'s type, the default one first."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        algorithm = EC_ALGORITHMS.get(public_key.curve.name)
        return (algorithm,) if algorithm else ()
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    return ()


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
            algorithms = (("HS256",) if secret else ()) + key_algorithms(public_key)[:1]
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
        except (jwt.PyJWTError, ValueError, TypeError) as exc:  # ValueError: non-ASCII bytes
            raise AuthError(401, f"invalid token: {exc}") from None
        if algorithm not in self.algorithms:
            raise AuthError(401, f"invalid token: algorithm {algorithm!r} is not accepted")
        key = self._key_for(algorithm)
        if key is None:
            raise AuthError(401, f"invalid token: no configured key verifies {algorithm!r}")
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
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        return claims

    def _key_for(self, algorithm: str) -> Any | None:
        """The secret for an HMAC algorithm; the public key only for its own key type."""
        if algorithm in HMAC_ALGORITHMS:
            return self.secret
        if algorithm in key_algorithms(self.public_key):
            return self.public_key
        return None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
