"""Numbered steps and indented details on stdout, so a reader can follow what the demo did, and
the wall-clock time of each phase."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Reporter:
    """Numbered steps and indented details on stdout, so a reader can follow what happened;
    `phase` times a stretch of steps (cold runs show where the minutes go)."""

    def __init__(self) -> None:
        self.number = 0
        self.began = time.monotonic()
        #: (phase, seconds) in the order they ended
        self.phases: list[tuple[str, float]] = []

    def step(self, text: str) -> None:
        self.number += 1
        print(f"\n==> {self.number}. {text}", flush=True)

    def info(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"    {line}", flush=True)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the steps inside as phase `name` (printed when it ends)."""
        began = time.monotonic()
        yield
        took = time.monotonic() - began
        self.phases.append((name, took))
        self.info(f"[{name}: {took:.1f} s]")

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def timings(self) -> list[str]:
        """One line per phase and the total since the reporter was made."""
        width = max((len(name) for name, _ in self.phases), default=0)
        lines = [f"{name:<{width}}  {took:6.1f} s" for name, took in self.phases]
        return [*lines, f"{'total':<{width}}  {self.elapsed():6.1f} s"]
