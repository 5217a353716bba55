"""StreamApp.media_answer: the open-file cache reference is released whatever happens."""

from __future__ import annotations

import pytest

from vod_stream import server
from vod_stream.config import Settings
from vod_stream.server import StreamApp

pytestmark = pytest.mark.unit


@pytest.fixture
def app(tmp_path) -> StreamApp:
    (tmp_path / "a.mp4").write_bytes(b"0123456789")
    return StreamApp(
        Settings.from_env(
            {"VOD_MEDIA_ROOT": str(tmp_path), "VOD_SIGNING_KEYS_DIR": str(tmp_path / "keys")}
        )
    )


def cached_file(app: StreamApp):
    shared = app.files.open("a.mp4")
    assert shared is not None
    shared.close()
    return shared


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 200), ({"if-match": '"nope"'}, 412), ({"range": "bytes=99-"}, 416)],
)
def test_answers_hold_the_file_only_when_they_send_it(app, headers, status) -> None:
    shared = cached_file(app)
    answer = app.media_answer("GET", "/a.mp4", {}, headers, None)
    assert answer.status == status
    if answer.file is not None:
        answer.file.close()
    app.files.clear()  # evicted and unused: the descriptor closes
    assert shared.fileno() == -1


def test_an_exception_releases_the_file(app, monkeypatch) -> None:
    shared = cached_file(app)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "decide", broken)
    with pytest.raises(RuntimeError):
        app.media_answer("GET", "/a.mp4", {}, {}, None)
    app.files.clear()
    assert shared.fileno() == -1
