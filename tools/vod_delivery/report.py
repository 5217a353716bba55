"""Numbered steps and indented details on stdout, so a reader can follow what the demo did."""

from __future__ import annotations


class Reporter:
    """Numbered steps and indented details on stdout, so a reader can follow what happened."""

    def __init__(self) -> None:
        self.number = 0

    def step(self, text: str) -> None:
        self.number += 1
        print(f"\n==> {self.number}. {text}", flush=True)

    def info(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"    {line}", flush=True)
