"""Settings: defaults, parsing errors that name the setting, the config file, the README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vod_stream.config import SPECS, ConfigError, Settings, available_cpus

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[3] / "README.md"


def test_defaults_match_the_contract():
    s = Settings.from_env({})
    assert (s.host, s.port, s.media_root) == ("0.0.0.0", 8080, Path("/media"))
    assert (s.max_upload_bytes, s.max_ranges, s.max_connections) == (10737418240, 16, 1024)
    assert (s.header_timeout_seconds, s.body_timeout_seconds, s.idle_timeout_seconds) == (
        10,
        60,
        75,
    )
    assert (s.shutdown_grace_seconds, s.send_timeout_seconds) == (25, 60)
    assert not s.signed_urls
    assert s.signing_keys_dir == Path("/etc/vod/signing")
    assert (s.signed_url_ttl_seconds, s.signed_url_bind_ip) == (3600, False)
    assert s.jwt_secret is None
    assert s.jwt_leeway_seconds == 30
    assert s.cors_allowed_origins == ()
    assert s.log_level == "INFO"
    assert s.tmp_dir == Path("/media/.vod-tmp")
    assert s.worker_count >= 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOD_PORT", "70000"),
        ("VOD_MAX_RANGES", "0"),
        ("VOD_SIGNED_URLS", "maybe"),
        ("VOD_IDLE_TIMEOUT_SECONDS", "-1"),
        ("VOD_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_config_file_then_environment(tmp_path):
    conf = tmp_path / "vod.env"
    conf.write_text("# comment\nVOD_PORT=9000\nVOD_CORS_ALLOWED_ORIGINS='https://a, https://b'\n")
    s = Settings.from_env({"VOD_CONFIG_FILE": str(conf)})
    assert s.port == 9000
    assert s.cors_allowed_origins == ("https://a", "https://b")
    assert Settings.from_env({"VOD_CONFIG_FILE": str(conf), "VOD_PORT": "9100"}).port == 9100
    with pytest.raises(ConfigError, match="VOD_CONFIG_FILE"):
        Settings.from_env({"VOD_CONFIG_FILE": str(tmp_path / "missing")})


def test_available_cpus_respects_a_cgroup_limit(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) >= 1
    assert available_cpus(tmp_path / "absent") >= 1


def test_readme_documents_every_setting():
    text = README.read_text()
    section = text[text.index("## Streaming server (vod-stream)") :]
    documented = set(re.findall(r"^\| `(VOD_[A-Z0-9_]+)` \|", section, re.MULTILINE))
    assert documented == {"VOD_" + spec.name for spec in SPECS}


def test_serve_help_lists_every_setting_with_its_default(capsys):
    from vod_stream.cli import flag_of, main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for spec in SPECS:
        assert flag_of(spec) in text
        default = spec.default if spec.default != "" else "unset"
        assert f"(VOD_{spec.name}; default: {default})" in text, spec.name
