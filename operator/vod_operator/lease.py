"""The Lease record and the leader election's decisions (pure; client-go's rules).

A `coordination.k8s.io/v1` Lease names its holder and how long the holder's claim lasts.
Clocks of different machines are never compared: a candidate notes on its own monotonic clock
when it last saw the record *change* (`Observation`), and the holder's claim lapses
`leaseDurationSeconds` after that, whatever `renewTime` says (client-go's observedTime).
The holder stops writing once it could not renew for `renew_deadline` seconds, which is
shorter than the lease, so that it has stopped before any other candidate may take over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

#: The format of a Lease's MicroTime fields.
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class ElectionConfig:
    """Which Lease, who is asking, and controller-runtime's default timing."""

    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, "
                f"not {self.lease_duration} > {self.renew_deadline} > {self.retry_period}"
            )
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease (what the election reads and writes)."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        """The Lease's spec (absent times left out rather than sent as null)."""
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


@dataclass(frozen=True)
class Observation:
    """The record as this candidate last saw it, and when it first saw it so (monotonic)."""

    record: LeaseRecord
    since: float


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(MICRO_TIME)


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """The new observation: its clock restarts only when the record changed."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def held_by_other(observation: Observation, identity: str, now: float) -> bool:
    """Whether someone else holds an unexpired claim, as far as this candidate can tell.

    An empty holder is a released Lease: free at once. The claim lasts the record's own
    leaseDurationSeconds (1 after a release) counted from when this candidate saw it change.
    """
    record = observation.record
    if not record.holder or record.holder == identity:
        return False
    return now < observation.since + record.lease_duration_seconds


def claim(current: LeaseRecord | None, config: ElectionConfig, wall: datetime) -> LeaseRecord:
    """The record that acquires (from someone else or nobody) or renews the Lease."""
    now = micro_time(wall)
    duration = math.ceil(config.lease_duration)  # an int32 on the wire; never shorter
    if current is None:
        return LeaseRecord(config.identity, duration, now, now, 0)
    if current.holder == config.identity:
        return replace(current, lease_duration_seconds=duration, renew_time=now)
    return LeaseRecord(config.identity, duration, now, now, current.transitions + 1)


def release(current: LeaseRecord, wall: datetime) -> LeaseRecord:
    """The record that gives the Lease up (client-go's ReleaseOnCancel: no holder, 1 s)."""
    now = micro_time(wall)
    return LeaseRecord("", 1, now, now, current.transitions)


def may_write(last_renewed: float | None, config: ElectionConfig, now: float) -> bool:
    """Whether the holder may still write: its last successful renew, *sent* at
    `last_renewed` (monotonic), is younger than the renew deadline."""
    return last_renewed is not None and now < last_renewed + config.renew_deadline
