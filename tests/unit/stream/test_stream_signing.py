"""Signed URLs and the key ring (pure parts): tampering, expiry, prefixes, IPs, rotation."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest

from vod_stream._dataplane import media_path, verify
from vod_stream.keys import KeyRing, read_keys
from vod_stream.signing import sign_params, signed_url

pytestmark = pytest.mark.unit

KEYS = {"k1": b"secret-1", "k2": b"secret-2"}
NOW = 1_700_000_000


def check(path, params, ip=None, now=NOW):
    return verify(path, params, KEYS.get, now, ip)


def test_round_trip_and_tampering():
    params = sign_params("/a.mp4", NOW + 60, "k1", KEYS["k1"])
    assert check("/a.mp4", params) is None
    assert check("/b.mp4", params) == "invalid signature"
    assert check("/a.mp4", {**params, "exp": str(NOW + 61)}) == "invalid signature"
    assert check("/a.mp4", {**params, "kid": "k2"}) == "invalid signature"
    assert check("/a.mp4", {**params, "kid": "k9"}) == "unknown key id"
    assert check("/a.mp4", {**params, "sig": params["sig"] + "x"}) == "invalid signature"
    assert check("/a.mp4", params, now=NOW + 61) == "signature expired"
    assert check("/a.mp4", {}).startswith("signature required")
    assert check("/a.mp4", {**params, "exp": "-1"}) == "invalid exp"
    assert check("/a.mp4", {**params, "sig": "é"}) == "invalid signature"


def test_ip_binding():
    params = sign_params("/a.mp4", NOW + 60, "k1", KEYS["k1"], ip="10.0.0.1")
    assert check("/a.mp4", params, ip="10.0.0.1") is None
    assert check("/a.mp4", params, ip="10.0.0.2") == "invalid signature"
    assert check("/a.mp4", params) == "invalid signature"


def test_prefix():
    params = sign_params("/hls/a/master.m3u8", NOW + 60, "k2", KEYS["k2"], prefix="/hls/a/")
    assert check("/hls/a/seg-1.m4s", params) is None
    assert check("/hls/ab/seg-1.m4s", params) == "path is outside the signed prefix"
    assert check("/hls/b/seg-1.m4s", {**params, "pfx": "/hls/b/"}) == "invalid signature"
    with pytest.raises(ValueError, match="prefix"):
        sign_params("/x.mp4", NOW, "k1", KEYS["k1"], prefix="/hls")


def test_url_quotes_the_path():
    url = signed_url("http://h:8080/", "/a b/é.mp4", {"exp": "1", "kid": "k", "sig": "s"})
    parts = urlsplit(url)
    assert parts.path == "/a%20b/%C3%A9.mp4"
    assert parse_qs(parts.query) == {"exp": ["1"], "kid": ["k"], "sig": ["s"]}


def test_key_folder_layout_of_a_kubernetes_secret(tmp_path):
    stamp = tmp_path / "..2026_01_01"
    stamp.mkdir()
    (stamp / "b").write_bytes(b"key-b\n")
    os.symlink(stamp.name, tmp_path / "..data")
    os.symlink("..data/b", tmp_path / "b")
    (tmp_path / "a").write_bytes(b"key-a")
    (tmp_path / "empty").write_bytes(b"\n")
    (tmp_path / "bad id!").write_bytes(b"x")
    assert read_keys(tmp_path) == {"a": b"key-a", "b": b"key-b"}
    ring = KeyRing(tmp_path)
    assert ring.active() == ("b", b"key-b")
    assert KeyRing(tmp_path, "a").active() == ("a", b"key-a")
    assert KeyRing(tmp_path, "zz").active() is None
    assert KeyRing(tmp_path / "missing").active() is None


@pytest.mark.parametrize(
    ("url_path", "expected"),
    [
        ("/a.mp4", "a.mp4"),
        ("//x//y.mp4", "x/y.mp4"),
        ("/", None),
        ("/../a", None),
        ("/x/./a", None),
        ("/.env", None),
        ("/x/.vod-tmp/u", None),
        ("/a\x00b", None),
        ("/a\\b", None),
        ("/a\nb", None),
        ("relative", None),
    ],
)
def test_media_path(url_path, expected):
    assert media_path(url_path) == expected
