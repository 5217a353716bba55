"""The origin interface's pure rules: object keys, and which origin the settings pick."""

from __future__ import annotations

from pathlib import Path

import pytest

from vod_stream.config import Settings
from vod_stream.storage import FileOrigin, ReadOnlyOrigin, open_origin, s3_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("", "a/b.mp4"),
        ("media/", "media/a/b.mp4"),
        ("/media", "media/a/b.mp4"),
        ("x/y/", "x/y/a/b.mp4"),
    ],
)
def test_s3_key_joins_the_prefix_without_outer_slashes(prefix: str, key: str) -> None:
    assert s3_key(prefix, "a/b.mp4") == key


def test_the_file_and_http_origins_are_picked_by_settings(tmp_path: Path) -> None:
    assert isinstance(open_origin(Settings.from_env({"VOD_MEDIA_ROOT": str(tmp_path)})), FileOrigin)
    http = Settings.from_env({"VOD_ORIGIN": "http", "VOD_HTTP_ORIGIN_URL": "http://o"})
    assert isinstance(open_origin(http), ReadOnlyOrigin)
