"""`python -m vod_operator`: its process-level settings."""

from __future__ import annotations

import pytest

from vod_operator.__main__ import limit_malloc_arenas, parse_args

pytestmark = pytest.mark.unit


def test_malloc_arenas_are_limited_on_glibc_unless_the_environment_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(8)  # glibc here (Debian); 8 is glibc's own per-core factor
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not limit_malloc_arenas()


def test_namespaces_repeat_and_leader_election_has_three_states() -> None:
    args = parse_args(["-n", "a", "-n", "b*", "--no-leader-elect"])
    assert args.namespace == ["a", "b*"]
    assert args.leader_elect is False
    assert parse_args([]).leader_elect is None
