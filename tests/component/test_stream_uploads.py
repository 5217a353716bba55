"""PUT/DELETE: JWT required, atomic replacement, limits, and no garbage after failures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import resource
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.component.conftest import (
    JWT_SECRET,
    ServerProcess,
    make_token,
    raw_request,
    raw_response_head,
    status_of,
)

pytestmark = pytest.mark.component

JWT_ENV = {"VOD_JWT_SECRET": JWT_SECRET}


def auth(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or make_token()}"}


def staging_is_empty(root: Path) -> bool:
    tmp = root / ".vod-tmp"
    return not tmp.exists() or not any(tmp.iterdir())


def test_put_get_replace_delete(start_server) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    with server.client() as c:
        first = c.put("/new/dir/clip.mp4", content=b"version one", headers=auth())
        assert first.status_code == 201
        assert first.json()["size"] == 11
        assert first.headers["location"] == "/new/dir/clip.mp4"
        got = c.get("/new/dir/clip.mp4")
        assert (got.content, got.headers["etag"]) == (b"version one", first.json()["etag"])
        second = c.put("/new/dir/clip.mp4", content=b"v2", headers=auth())
        assert second.status_code == 200
        assert c.get("/new/dir/clip.mp4").content == b"v2"
        assert c.delete("/new/dir/clip.mp4", headers=auth()).status_code == 204
        assert c.get("/new/dir/clip.mp4").status_code == 404
        assert c.delete("/new/dir/clip.mp4", headers=auth()).status_code == 404
        assert c.put("/new", content=b"x", headers=auth()).status_code == 409  # a folder
        assert c.put("/.hidden", content=b"x", headers=auth()).status_code == 404
    for target in ("/../escape.mp4", "/%2e%2e/escape.mp4", "/..%2fescape.mp4"):
        response = raw_request(
            server.port,
            f"PUT {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n"
            "Content-Length: 1\r\nConnection: close\r\n\r\nx".encode(),
        )
        assert status_of(response) in (400, 404)
    assert staging_is_empty(server.media_root)
    assert not (server.media_root.parent / "escape.mp4").exists()


def test_put_creates_no_folder_through_a_symlink_out_of_the_root(start_server, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "media"
    (root / "inside").mkdir(parents=True)
    os.symlink(outside, root / "dir-out")
    os.symlink(tmp_path / "nowhere", root / "dangling")
    os.symlink(root / "inside", root / "dir-in")
    server: ServerProcess = start_server(media_root=root, env=JWT_ENV)
    with server.client() as c:
        for target in ("/dir-out/new/deeper/clip.mp4", "/dir-out/clip.mp4", "/dangling/a/b.mp4"):
            r = c.put(target, content=b"x", headers=auth())
            assert r.status_code in (404, 409), (target, r.status_code)
        # a symlinked folder that stays inside the root is still written through
        assert c.put("/dir-in/new/clip.mp4", content=b"in", headers=auth()).status_code == 201
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "nowhere").exists()
    assert (root / "inside" / "new" / "clip.mp4").read_bytes() == b"in"
    assert staging_is_empty(root)


def test_tokens_are_checked(start_server) -> None:
    server: ServerProcess = start_server(
        env={**JWT_ENV, "VOD_JWT_ISSUER": "issuer-a", "VOD_JWT_AUDIENCE": "vod"}
    )
    good = make_token(iss="issuer-a", aud="vod")
    with server.client() as c:
        assert c.put("/a.mp4", content=b"x", headers=auth(good)).status_code == 201
        missing = c.put("/b.mp4", content=b"x")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "bearer token" in missing.json()["error"]["message"]
        header, payload, sig = good.split(".")
        tampered = f"{header}.{payload}.{sig[:-3]}{'AAA' if sig[-3:] != 'AAA' else 'BBB'}"
        now = int(time.time())
        bad_tokens = [
            tampered,
            make_token(secret="another-secret-of-the-same-size-123", iss="issuer-a", aud="vod"),
            make_token(iss="issuer-a", aud="vod", exp=now - 3600),  # expired beyond the leeway
            make_token(iss="issuer-a", aud="vod", nbf=now + 3600),  # not yet valid
            make_token(iss="issuer-b", aud="vod"),
            make_token(iss="issuer-a", aud="other"),
            make_token(iss="issuer-a", aud="vod", exp=None),  # exp is required
            make_token(
                secret="s" * 64, algorithm="HS512", iss="issuer-a", aud="vod"
            ),  # not an accepted alg
        ]
        for token in bad_tokens:
            r = c.put("/b.mp4", content=b"x", headers=auth(token))
            assert r.status_code == 401, token
            assert r.json()["error"]["message"].startswith("invalid token")
        skewed = make_token(iss="issuer-a", aud="vod", exp=now - 5)  # inside the 30 s leeway
        assert c.put("/b.mp4", content=b"x", headers=auth(skewed)).status_code == 201
        assert c.delete("/a.mp4").status_code == 401
        assert c.post("/admin/sign", json={"path": "/a.mp4"}).status_code == 401
    assert (server.media_root / "b.mp4").read_bytes() == b"x"


def test_writes_refused_without_a_key(start_server) -> None:
    server: ServerProcess = start_server()
    with server.client() as c:
        r = c.put("/a.mp4", content=b"x", headers=auth())
        assert r.status_code == 403
        assert "no JWT key" in r.json()["error"]["message"]
        assert c.delete("/a.mp4", headers=auth()).status_code == 403
    assert not (server.media_root / "a.mp4").exists()


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_public_key_tokens(start_server, tmp_path: Path, kind: str) -> None:
    private = rsa_key() if kind == "RS256" else ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    server: ServerProcess = start_server(env={"VOD_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem")})
    other = ec.generate_private_key(ec.SECP256R1()) if kind == "RS256" else rsa_key()
    other_kind = "ES256" if kind == "RS256" else "RS256"
    with server.client() as c:
        ok = make_token(secret=pem_of(private), algorithm=kind)
        assert c.put("/k.mp4", content=b"x", headers=auth(ok)).status_code == 201
        # an HS256 token signed with the public key's PEM text (algorithm confusion)
        refused = c.put("/k.mp4", content=b"y", headers=auth(hmac_token(pem)))
        assert refused.status_code == 401
        assert refused.json()["error"]["message"].startswith("invalid token")
        # a token of the other key type (used to raise TypeError inside PyJWT: a 500)
        wrong_type = make_token(secret=pem_of(other), algorithm=other_kind)
        refused = c.put("/k.mp4", content=b"y", headers=auth(wrong_type))
        assert refused.status_code == 401
        assert "not accepted" in refused.json()["error"]["message"]
    assert (server.media_root / "k.mp4").read_bytes() == b"x"


def test_listed_algorithms_only_use_a_key_of_their_type(start_server, tmp_path: Path) -> None:
    """Listed algorithms with an RSA key: an ES256 or HS256 token is a 401, never a 500."""
    private = rsa_key()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    server: ServerProcess = start_server(
        env={
            "VOD_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem"),
            "VOD_JWT_ALGORITHMS": "HS256,RS256,ES256",
        }
    )
    attacker = ec.generate_private_key(ec.SECP256R1())
    with server.client() as c:
        for token in (
            make_token(secret=pem_of(attacker), algorithm="ES256"),
            hmac_token(pem),  # HS256 is listed, but no secret is configured
        ):
            r = c.put("/k.mp4", content=b"y", headers=auth(token))
            assert r.status_code == 401, r.text
            assert "no configured key verifies" in r.json()["error"]["message"]
        good = make_token(secret=pem_of(private), algorithm="RS256")
        assert c.put("/k.mp4", content=b"x", headers=auth(good)).status_code == 201
    assert (server.media_root / "k.mp4").read_bytes() == b"x"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def pem_of(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def hmac_token(secret: bytes) -> str:
    """An HS256 JWT signed with ``secret``, built by hand: PyJWT refuses a PEM key as an HMAC
    secret, an attacker's code does not."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": "tester", "iat": now, "exp": now + 300}).encode())
    signature = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def test_size_limit_413(start_server) -> None:
    server: ServerProcess = start_server(env={**JWT_ENV, "VOD_MAX_UPLOAD_BYTES": "1000"})
    token = make_token()
    declared = raw_response_head(
        server.port,
        f"PUT /big.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 1001\r\n\r\n".encode(),
    )
    assert status_of(declared) == 413
    chunked = raw_response_head(
        server.port,
        f"PUT /big.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + b"258\r\n"
        + b"z" * 600
        + b"\r\n"
        + b"258\r\n"
        + b"z" * 600
        + b"\r\n",
    )
    assert status_of(chunked) == 413
    with server.client() as c:
        assert c.put("/ok.mp4", content=b"y" * 1000, headers=auth(token)).status_code == 201
    assert not (server.media_root / "big.mp4").exists()
    assert staging_is_empty(server.media_root)


def test_client_disconnect_mid_upload_leaves_nothing(start_server) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    (server.media_root / "keep.mp4").write_bytes(b"original")
    for number, target in enumerate(("/cut.mp4", "/keep.mp4"), 1):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                f"PUT {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n"
                f"Content-Length: {10 * 1024 * 1024}\r\n\r\n".encode()
            )
            sock.sendall(os.urandom(1024 * 1024))
            time.sleep(0.3)
        # the server notices the cut, logs it and cleans up
        deadline = time.monotonic() + 10
        while len(server.events("upload failed")) < number:
            assert time.monotonic() < deadline, "the cut upload was not noticed"
            time.sleep(0.05)
    assert len(server.events("upload failed")) == 2
    assert all(e["reason"] == "disconnected" for e in server.events("upload failed"))
    assert not (server.media_root / "cut.mp4").exists()
    assert (server.media_root / "keep.mp4").read_bytes() == b"original"
    deadline = time.monotonic() + 5  # the temporary file goes right after the log line
    while not staging_is_empty(server.media_root):
        assert time.monotonic() < deadline, "temporary upload file left behind"
        time.sleep(0.05)
    with server.client() as c:
        metrics = c.get("/metrics").text
    assert 'vod_upload_failures_total{reason="disconnected"} 2.0' in metrics


def test_full_disk_is_507_and_leaves_nothing(start_server) -> None:
    """RLIMIT_FSIZE makes writes past 8 MiB fail (EFBIG) as a full disk would (ENOSPC)."""
    limit = 8 * 1024 * 1024

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    server: ServerProcess = start_server(env=JWT_ENV, preexec_fn=small_disk)
    with server.client() as c:
        r = c.put("/huge.mp4", content=os.urandom(2 * limit), headers=auth())
        assert r.status_code == 507
        assert r.json()["error"]["message"] == "no space left to store the file"
        assert c.put("/fits.mp4", content=b"ok", headers=auth()).status_code == 201
    assert not (server.media_root / "huge.mp4").exists()
    assert staging_is_empty(server.media_root)


def test_replacement_is_atomic_for_readers(start_server) -> None:
    server: ServerProcess = start_server(env={**JWT_ENV, "VOD_WORKERS": "2"})
    versions = [b"a" * (1024 * 1024), b"b" * (3 * 1024 * 1024)]
    token = make_token()
    with server.client() as c:
        assert c.put("/swap.mp4", content=versions[0], headers=auth(token)).status_code == 201
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        with server.client() as reader:
            while not stop.is_set():
                seen.append(reader.get("/swap.mp4").content)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    with server.client() as writer:
        for i in range(10):
            r = writer.put("/swap.mp4", content=versions[i % 2 == 0], headers=auth(token))
            assert r.status_code == 200
    stop.set()
    for t in threads:
        t.join(30)
    assert len(seen) > 5
    assert all(body in versions for body in seen)
    assert staging_is_empty(server.media_root)


def test_stale_staging_files_are_removed_at_start(start_server, tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / ".vod-tmp").mkdir(parents=True)
    stale = root / ".vod-tmp" / "upload-old"
    stale.write_bytes(b"left by a crash")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = root / ".vod-tmp" / "upload-new"
    fresh.write_bytes(b"someone is writing")
    start_server(media_root=root, env={"VOD_BODY_TIMEOUT_SECONDS": "60"})
    assert not stale.exists()
    assert fresh.exists()


def test_body_timeout(start_server) -> None:
    server: ServerProcess = start_server(env={**JWT_ENV, "VOD_BODY_TIMEOUT_SECONDS": "1"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"PUT /slow.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n"
            "Content-Length: 100\r\n\r\nonly a part".encode()
        )
        started = time.monotonic()
        response = sock.recv(65536)
        assert status_of(response) == 408
        assert time.monotonic() - started < 5
    assert not (server.media_root / "slow.mp4").exists()
    assert staging_is_empty(server.media_root)
