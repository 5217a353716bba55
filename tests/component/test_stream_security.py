"""Signed playback URLs (with the real `vod-stream sign` command), key rotation, CORS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.component.conftest import JWT_SECRET, ServerProcess, make_token
from vod_stream.signing import sign_params

pytestmark = pytest.mark.component

ORIGIN = "https://app.example.com"


def sign(keys: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vod_stream", "sign", *args],
        env={"PATH": os.environ["PATH"], "VOD_SIGNING_KEYS_DIR": str(keys), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def signed(start_server, tmp_path: Path) -> ServerProcess:
    root = tmp_path / "media"
    (root / "hls").mkdir(parents=True)
    (root / "movie.mp4").write_bytes(b"0123456789" * 100)
    (root / "hls" / "master.m3u8").write_bytes(b"#EXTM3U\n")
    (root / "hls" / "seg1.ts").write_bytes(b"segment")
    server: ServerProcess = start_server(
        media_root=root,
        env={"VOD_SIGNED_URLS": "true", "VOD_JWT_SECRET": JWT_SECRET},
    )
    keys = tmp_path / "server0" / "keys"
    (keys / "k1").write_bytes(b"first-key\n")
    server.keys = keys  # type: ignore[attr-defined]
    return server


def test_signed_url_required_and_checked(signed: ServerProcess) -> None:
    keys: Path = signed.keys  # type: ignore[attr-defined]
    url = sign(keys, "/movie.mp4", "--ttl", "60", "--base-url", signed.url)
    assert url.startswith(f"{signed.url}/movie.mp4?exp=")
    assert set(query(url)) == {"exp", "kid", "sig"}
    with signed.client() as c:
        ok = c.get(url, headers={"Range": "bytes=0-3"})
        assert (ok.status_code, ok.content) == (206, b"0123")
        assert c.head(url).status_code == 200
        missing = c.get("/movie.mp4")
        assert missing.status_code == 403
        assert "signature required" in missing.json()["error"]["message"]
        params = query(url)
        tampered = [
            {**params, "sig": params["sig"][:-2] + ("AA" if params["sig"][-2:] != "AA" else "BB")},
            {**params, "exp": str(int(params["exp"]) + 1)},
            {**params, "kid": "nope"},
            {**params, "exp": "12abc"},
        ]
        for bad in tampered:
            r = c.get("/movie.mp4?" + urlencode(bad))
            assert r.status_code == 403, bad
        other_path = c.get("/hls/seg1.ts?" + urlencode(params))
        assert other_path.status_code == 403
        assert other_path.json()["error"]["message"] == "invalid signature"
        expired = sign(keys, "/movie.mp4", "--ttl", "-5")
        r = c.get(expired)
        assert (r.status_code, r.json()["error"]["message"]) == (403, "signature expired")
        # operational endpoints are never signed
        assert c.get("/healthz").status_code == 200
        assert c.get("/ping").status_code == 200


def test_prefix_signature_covers_a_folder(signed: ServerProcess) -> None:
    keys: Path = signed.keys  # type: ignore[attr-defined]
    url = sign(keys, "/hls/master.m3u8", "--prefix", "/hls/", "--ttl", "60")
    assert url.startswith("/t/")
    assert url.endswith("/hls/master.m3u8")
    token = url.split("/")[2]
    with signed.client() as c:
        assert c.get(url).content == b"#EXTM3U\n"
        seg = c.get(f"/t/{token}/hls/seg1.ts")
        assert (seg.status_code, seg.content) == (200, b"segment")
        assert c.get(f"/t/{token}/movie.mp4").status_code == 403
        # the query form of a prefix signature (URLs signed before path tokens) still works
        exp = int(time.time()) + 60
        params = sign_params("/hls/seg1.ts", exp, "k1", b"first-key", prefix="/hls/")
        assert c.get("/hls/seg1.ts?" + urlencode(params)).status_code == 200
        assert c.get("/movie.mp4?" + urlencode(params)).status_code == 403
        widened = c.get("/movie.mp4?" + urlencode({**params, "pfx": "/"}))
        assert widened.status_code == 403


def test_key_rotation_without_restart(signed: ServerProcess) -> None:
    keys: Path = signed.keys  # type: ignore[attr-defined]
    old = sign(keys, "/movie.mp4", "--ttl", "60")
    # Kubernetes mounts a Secret as ..data -> ..<timestamp>/ and one symlink per key
    stamp = keys / "..2026_11_23"
    stamp.mkdir()
    (stamp / "k2").write_bytes(b"second-key")
    os.symlink(stamp.name, keys / "..data")
    os.symlink("..data/k2", keys / "k2")
    new = sign(keys, "/movie.mp4", "--ttl", "60")
    assert query(new)["kid"] == "k2"  # the last key id in sorted order signs
    pinned = sign(keys, "/movie.mp4", "--ttl", "60", env={"VOD_SIGNING_ACTIVE_KEY_ID": "k1"})
    assert query(pinned)["kid"] == "k1"
    with signed.client() as c:
        deadline = time.monotonic() + 5
        while c.get(new).status_code != 200:  # the key ring is re-read within a second
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert c.get(old).status_code == 200
        (keys / "k1").unlink()
        deadline = time.monotonic() + 5
        while c.get(old).status_code != 403:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert c.get(old).json()["error"]["message"] == "unknown key id"
        assert c.get(new).status_code == 200


def test_client_ip_binding(start_server, tmp_path: Path) -> None:
    server: ServerProcess = start_server(
        env={"VOD_SIGNED_URLS": "true", "VOD_SIGNED_URL_BIND_IP": "true"}
    )
    keys = tmp_path / "server0" / "keys"
    (keys / "main").write_bytes(b"ip-key")
    (server.media_root / "a.mp4").write_bytes(b"abc")
    mine = sign(keys, "/a.mp4", "--ip", "127.0.0.1", "--ttl", "60")
    theirs = sign(keys, "/a.mp4", "--ip", "10.1.2.3", "--ttl", "60")
    unbound = sign(keys, "/a.mp4", "--ttl", "60")
    with server.client() as c:
        assert c.get(mine).content == b"abc"
        assert c.get(theirs).status_code == 403
        assert c.get(unbound).status_code == 403


def test_admin_sign_needs_a_jwt_and_returns_a_working_url(signed: ServerProcess) -> None:
    with signed.client() as c:
        assert c.post("/admin/sign", json={"path": "/movie.mp4"}).status_code == 401
        r = c.post(
            "/admin/sign",
            json={"path": "/movie.mp4", "ttl": 30},
            headers={"Authorization": f"Bearer {make_token()}"},
        )
        assert r.status_code == 200
        assert c.get(r.json()["url"]).status_code == 200


def test_sign_command_without_keys_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        sign(tmp_path, "/a.mp4")
    assert "no signing key" in failure.value.stderr


def test_cors(start_server) -> None:
    server: ServerProcess = start_server(env={"VOD_CORS_ALLOWED_ORIGINS": ORIGIN})
    (server.media_root / "v.mp4").write_bytes(b"video")
    with server.client() as c:
        preflight = c.options(
            "/v.mp4",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert "Range" in preflight.headers["access-control-allow-headers"]
        refused = c.options(
            "/v.mp4",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        r = c.get("/v.mp4", headers={"Origin": ORIGIN, "Range": "bytes=0-1"})
        assert r.status_code == 206
        assert r.headers["access-control-allow-origin"] == ORIGIN
        exposed = r.headers["access-control-expose-headers"]
        for name in ("Content-Range", "Accept-Ranges", "Content-Length", "ETag"):
            assert name in exposed
        other = c.get("/v.mp4", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        assert other.headers["vary"] == "Origin"
