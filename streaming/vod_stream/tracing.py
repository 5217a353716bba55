"""Request ids and W3C Trace Context ``traceparent`` (received, or created)."""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# Identifiers, not secrets: a per-process generator seeded from the OS (no system call per id).
_random = random.Random()
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def valid_traceparent(value: str | None) -> bool:
    if value is None:
        return False
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return False
    version, trace_id, parent_id, _flags = match.groups()
    return version != "ff" and trace_id != "0" * 32 and parent_id != "0" * 16


def traceparent_for(received: str | None) -> str:
    """The received traceparent when valid, else a new one (version 00, not sampled)."""
    if received is not None and valid_traceparent(received):
        return received.strip()
    return f"00-{_random.getrandbits(128) or 1:032x}-{_random.getrandbits(64) or 1:016x}-00"


def request_id_for(received: str | None) -> str:
    """The received X-Request-Id when it is short and plain, else a new random one."""
    if received is not None and _REQUEST_ID.fullmatch(received):
        return received
    return f"{_random.getrandbits(64):016x}"
