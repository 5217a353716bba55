"""Who wrote what, from the local control plane's audit log (writes only: flags.AUDIT_POLICY)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Write:
    at: datetime
    verb: str
    resource: str
    name: str
    agent: str


def audited_writes(log: Path, namespace: str) -> list[Write]:
    """The successful writes to objects in `namespace`, oldest first (one JSON event a line)."""
    writes = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if event.get("stage") != "ResponseComplete" or ref.get("namespace") != namespace:
            continue
        if not 200 <= int(event.get("responseStatus", {}).get("code", 0)) < 300:
            continue
        writes.append(
            Write(
                datetime.fromisoformat(event["requestReceivedTimestamp"]),
                event["verb"],
                ref.get("resource", ""),
                ref.get("name", ""),
                event.get("userAgent", ""),
            )
        )
    return writes
