"""traceparent and request ids: received ones kept when valid, new ones well-formed and distinct."""

from __future__ import annotations

import pytest

from vod_stream.tracing import request_id_for, traceparent_for, valid_traceparent

pytestmark = pytest.mark.unit

GOOD = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "garbage",
    ],
)
def test_invalid_traceparents_are_replaced(value):
    assert not valid_traceparent(value)
    made = traceparent_for(value)
    assert made != value
    assert valid_traceparent(made)


def test_valid_traceparent_is_kept_and_new_ones_differ():
    assert traceparent_for(GOOD) == GOOD
    made = {traceparent_for(None) for _ in range(100)}
    assert len(made) == 100
    assert all(valid_traceparent(t) and len(t) == 55 for t in made)


def test_request_ids():
    assert request_id_for("req-42") == "req-42"
    assert request_id_for("bad id with spaces") != "bad id with spaces"
    assert request_id_for("x" * 200) != "x" * 200
    assert len({request_id_for(None) for _ in range(100)}) == 100
