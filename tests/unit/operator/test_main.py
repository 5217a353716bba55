"""`python -m vod_operator`: its process-level settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from vod_operator import memory
from vod_operator.__main__ import parse_args

pytestmark = pytest.mark.unit


def test_malloc_arenas_are_limited_on_glibc_unless_the_environment_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.limit_arenas(8)  # glibc here (Debian); 8 is glibc's own per-core factor
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not memory.limit_arenas()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_freed_heap_pages_go_back_to_the_system() -> None:
    # 40 MB of blocks from glibc's heap (above pymalloc's 512 bytes, below mmap's threshold);
    # the last one stays, so the heap's top cannot shrink by itself.
    blocks = [bytearray(20_000) for _ in range(2000)]
    last = blocks[-1]
    del blocks
    before = rss_mib()
    assert memory.trim()
    assert before - rss_mib() > 20, "malloc_trim gave back less than half of what was freed"
    assert len(last) == 20_000


def test_namespaces_repeat_and_leader_election_has_three_states() -> None:
    args = parse_args(["-n", "a", "-n", "b*", "--no-leader-elect"])
    assert args.namespace == ["a", "b*"]
    assert args.leader_elect is False
    assert parse_args([]).leader_elect is None
