"""The S3 test server itself (tools/localcluster/s3server.py): credentials enforced, public
buckets readable anonymously, and a clean stop."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from localcluster.s3server import S3Server, start_s3_server

pytestmark = pytest.mark.component


def test_credentials_are_enforced_and_public_buckets_are_readable(s3_server: S3Server) -> None:
    private = s3_server.make_bucket(f"priv-{uuid.uuid4().hex[:8]}")
    public = s3_server.make_bucket(f"pub-{uuid.uuid4().hex[:8]}", public_read=True)
    for bucket in (private, public):
        assert s3_server.request("PUT", f"/{bucket}/k.bin", body=b"0123456789").status == 200
    assert s3_server.request("GET", f"/{private}/k.bin", signed=False).status == 403
    anonymous = s3_server.request(
        "GET", f"/{public}/k.bin", headers={"Range": "bytes=2-4"}, signed=False
    )
    assert (anonymous.status, anonymous.body) == (206, b"234")
    assert s3_server.request("PUT", f"/{public}/w.bin", body=b"x", signed=False).status == 403
    assert s3_server.list_keys(public) == ["k.bin"]


def test_write_credentials_gives_the_files_the_settings_read(
    s3_server: S3Server, tmp_path: Path
) -> None:
    key_file, secret_file = s3_server.write_credentials(tmp_path / "creds")
    assert key_file.read_text().strip() == s3_server.access_key
    assert secret_file.read_text().strip() == s3_server.secret_key


def test_a_stopped_server_leaves_no_process_and_no_listener(tmp_path: Path) -> None:
    server = start_s3_server(tmp_path / "weed", buckets=["one"])
    assert server.list_keys("one") == []
    port = int(server.endpoint.rsplit(":", 1)[1])
    server.stop()
    assert server.process.poll() is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
