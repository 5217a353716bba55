"""The supervisor's start-up: the metrics folder is emptied of metrics files only."""

from __future__ import annotations

import os

import pytest

from vod_stream.config import Settings
from vod_stream.supervisor import prepare_metrics_dir

pytestmark = pytest.mark.unit


def test_only_prometheus_files_are_removed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "restored after the test")
    folder = tmp_path / "media"  # a mistaken VOD_METRICS_DIR=/media
    (folder / "movies").mkdir(parents=True)
    keep = ["movie.mp4", "movies/inner.mp4", "notes.db", "counter.db", "archive_12.db.bak"]
    stale = ["counter_123.db", "gauge_livesum_123.db", "histogram_7.db"]
    for name in keep + stale:
        (folder / name).write_bytes(b"data")
    (folder / "gauge_all_9.db").mkdir()  # a folder, even with the name of one, is kept
    prepare_metrics_dir(Settings.from_env({"VOD_METRICS_DIR": str(folder)}))
    assert all((folder / name).read_bytes() == b"data" for name in keep)
    assert not any((folder / name).exists() for name in stale)
    assert (folder / "gauge_all_9.db").is_dir()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)


def test_a_missing_folder_is_created(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "restored after the test")
    folder = tmp_path / "a" / "metrics"
    prepare_metrics_dir(Settings.from_env({"VOD_METRICS_DIR": str(folder)}))
    assert folder.is_dir()
