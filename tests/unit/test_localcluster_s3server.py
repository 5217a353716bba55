"""The S3 test server's command line and identities (pure parts of s3server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localcluster.s3server import PORT_NAMES, free_ports, identities, weed_command

pytestmark = pytest.mark.unit


def test_weed_listens_on_loopback_only_with_every_port_given(tmp_path: Path) -> None:
    ports = dict(zip(PORT_NAMES, range(20000, 20000 + len(PORT_NAMES)), strict=True))
    argv = weed_command(Path("/bin/weed"), tmp_path, ports)
    assert argv[:3] == ["/bin/weed", f"-config_dir={tmp_path}", "server"]
    assert "-ip.bind=127.0.0.1" in argv
    assert "-master.telemetry=false" in argv
    for name, port in ports.items():
        assert f"-{name}={port}" in argv


def test_identities_give_anonymous_read_only_on_public_buckets() -> None:
    config: dict[str, Any] = identities("AK", "SK", ["pub"])
    admin, anonymous = config["identities"]
    assert admin["credentials"] == [{"accessKey": "AK", "secretKey": "SK"}]
    assert anonymous == {"name": "anonymous", "actions": ["Read:pub"]}


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
