"""Metric labels stay bounded whatever clients send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vod_stream.metrics import method_label, status_class

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST"])
def test_known_methods_are_their_own_label(method):
    assert method_label(method) == method


@given(st.text(max_size=20))
def test_any_other_method_is_other(method):
    known = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST"}
    assert method_label(method) == (method if method in known else "other")


def test_status_class():
    assert [status_class(s) for s in (200, 206, 304, 404, 499, 503)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "5xx",
    ]
