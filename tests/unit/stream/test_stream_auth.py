"""JwtVerifier: the public key's type decides the asymmetric algorithms it verifies."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vod_stream.auth import AuthError, JwtVerifier
from vod_stream.config import Settings

pytestmark = pytest.mark.unit


def verifier(tmp_path, private, algorithms: str = "") -> JwtVerifier:
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    env = {"VOD_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem"), "VOD_JWT_ALGORITHMS": algorithms}
    return JwtVerifier.from_settings(Settings.from_env(env))


def bearer(private, algorithm: str) -> str:
    return "Bearer " + jwt.encode({"exp": int(time.time()) + 60}, private, algorithm)


@pytest.mark.parametrize(
    ("private", "algorithm"),
    [
        (rsa.generate_private_key(65537, 2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
)
def test_default_algorithm_follows_the_key(tmp_path, private, algorithm) -> None:
    checker = verifier(tmp_path, private)
    assert checker.algorithms == (algorithm,)
    assert "exp" in checker.verify(bearer(private, algorithm))


def test_rsa_key_refuses_ec_tokens_even_when_listed(tmp_path) -> None:
    private = rsa.generate_private_key(65537, 2048)
    checker = verifier(tmp_path, private, "RS256,RS512,ES256")
    assert "exp" in checker.verify(bearer(private, "RS512"))  # listed and of the key's type
    with pytest.raises(AuthError, match="no configured key verifies 'ES256'") as refused:
        checker.verify(bearer(ec.generate_private_key(ec.SECP256R1()), "ES256"))
    assert refused.value.status == 401
    with pytest.raises(AuthError, match="not accepted"):
        checker.verify(bearer(private, "RS384"))  # of the key's type, but not listed


def test_ec_key_of_another_curve_is_a_401(tmp_path) -> None:
    checker = verifier(tmp_path, ec.generate_private_key(ec.SECP256R1()), "ES256,ES384")
    with pytest.raises(AuthError) as refused:
        checker.verify(bearer(ec.generate_private_key(ec.SECP384R1()), "ES384"))
    assert refused.value.status == 401
