"""Two operator processes behind one Lease against a real API server: exactly one reconciles,
the other takes over when the leader is SIGKILLed (within 20 s) or stopped with SIGTERM
(within 5 s), and the API server's audit log shows no write from an old leader after its
successor's first write. Needs only the control plane (kwok pods); prints the timeline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from localcluster.flags import Layout
from tests.cluster.audit import Write, audited_writes
from tests.cluster.conftest import Namespace, OperatorProcess, Replica, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]

KILL_TARGET = 20.0
TERM_TARGET = 5.0


def platform(name: str) -> str:
    return (
        "apiVersion: videoplatform.io/v1alpha1\nkind: VideoPlatform\n"
        f"metadata:\n  name: {name}\nspec:\n  storage:\n    emptyDir: {{}}\n"
    )


@dataclass
class Election:
    """A namespace holding the Lease, the replicas' environment, and every replica started (all
    stopped when the test ends, whatever its outcome)."""

    ns: Namespace
    env: dict[str, str]
    log_dir: Path
    replicas: list[Replica] = field(default_factory=list)

    def start(self, label: str) -> Replica:
        process = OperatorProcess(env=self.env, log_path=self.log_dir / f"operator-{label}.log")
        replica = Replica(process)
        self.replicas.append(replica)
        process.start()
        eventually(lambda: replica.leading() is not None, timeout=30)
        return replica


@pytest.fixture
def election(crd_installed: Any, operator: OperatorProcess, tmp_path: Path) -> Iterator[Election]:
    """The session's operator reconciles every namespace: it is stopped while the replicas under
    test are the only operators (a third writer would muddle who wrote what), then restarted."""
    name = f"le-{uuid.uuid4().hex[:8]}"
    crd_installed.kubectl("create", "namespace", name)
    env = {
        **crd_installed.env,
        "VOD_OPERATOR_LEADER_ELECTION": "true",
        "VOD_OPERATOR_LEADER_ELECTION_NAMESPACE": name,
        "VOD_OPERATOR_LEADER_ELECTION_NAME": "vod-operator",
        "VOD_OPERATOR_MONITORING_PROBE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
    }
    election = Election(Namespace(name=name, cluster=crd_installed), env, tmp_path)
    operator.stop()
    try:
        yield election
    finally:
        for replica in election.replicas:
            replica.process.stop()
        operator.start()
        crd_installed.kubectl("delete", "namespace", name, "--wait=false", check=False)


def one_leader(*replicas: Replica) -> tuple[Replica, Replica]:
    def check() -> tuple[Replica, Replica] | None:
        states = [r.leading() for r in replicas]
        if sorted(map(bool, states)) != [False, True]:
            return None
        leader = replicas[states.index(True)]
        standby = replicas[states.index(False)]
        return leader, standby

    found = eventually(check, timeout=40)
    assert found is not None
    return found


def lease_holder(ns: Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = ns.get("lease", "vod-operator")["spec"]
    return spec


def deployment_writes(audit: Path, ns: Namespace, platform_name: str) -> list[Write]:
    """Writes of an operator (any replica) to the platform's Deployment, oldest first."""
    return [
        w
        for w in audited_writes(audit, ns.name)
        if w.name == f"{platform_name}-stream"
        and w.resource == "deployments"
        and w.agent.startswith("vod-operator/")
    ]


def take_over(
    ns: Namespace, audit: Path, leader: Replica, standby: Replica, how: str
) -> tuple[float, float, datetime]:
    """Stop the leader (`how`: kill or term) and create a platform at once. Seconds until the
    standby wrote the Lease (leads), seconds until the platform's Deployment was written, and
    the time of the standby's first write (the hand-over)."""
    name = f"after-{how}"
    assert leader.process.process is not None
    began = time.time()
    if how == "kill":
        leader.process.process.kill()
    else:
        leader.process.process.terminate()
    ns.apply(platform(name))

    def standby_wrote() -> list[Write]:
        return [
            w
            for w in audited_writes(audit, ns.name)
            if standby.identity in w.agent and w.resource == "leases"
        ]

    acquired = eventually(standby_wrote, timeout=KILL_TARGET + 15, interval=0.1)[0].at
    created = eventually(lambda: deployment_writes(audit, ns, name), timeout=30, interval=0.1)
    if how == "kill":  # nobody else could have written it
        assert all(standby.identity in w.agent for w in created), created
    leader.process.process.wait(timeout=30)
    leader.process.process = None
    return acquired.timestamp() - began, created[0].at.timestamp() - began, acquired


def assert_silent_after(audit: Path, ns: Namespace, old: Replica, since: datetime) -> Write:
    """No write from `old` (its user agent carries its identity) from `since` on; its last."""
    writes = [w for w in audited_writes(audit, ns.name) if old.identity in w.agent]
    late = [w for w in writes if w.at >= since]
    assert late == [], f"writes by the old leader after the hand-over: {late}"
    assert writes, f"no write at all by {old.identity} in the audit log"
    last = max(writes, key=lambda w: w.at)
    print(
        f"\naudit: {len(writes)} writes by the old leader, the last ({last.verb} "
        f"{last.resource}/{last.name}) {(since - last.at).total_seconds():.2f} s before the "
        "new leader's first write; none after"
    )
    return last


def test_one_leader_writes_and_the_standby_takes_over(
    election: Election, crd_installed: Any
) -> None:
    ns = election.ns
    audit = Layout(Path(crd_installed.kubeconfig).parent).audit_log
    if not audit.exists():
        pytest.fail(f"no audit log at {audit}: not this project's local control plane")
    a = election.start("a")
    b = election.start("b")
    leader, standby = one_leader(a, b)
    assert lease_holder(ns)["holderIdentity"] == leader.identity
    assert leader.identity != standby.identity

    # Only the leader writes: the first platform's children come from it alone.
    ns.apply(platform("first"))
    first = eventually(lambda: deployment_writes(audit, ns, "first"), timeout=30)
    assert leader.identity in first[0].agent
    time.sleep(3)  # the standby saw the same events meanwhile
    agents = {w.agent for w in audited_writes(audit, ns.name) if w.resource != "leases"}
    assert all(leader.identity in agent for agent in agents if "vod-operator" in agent), agents
    assert not [w for w in audited_writes(audit, ns.name) if standby.identity in w.agent]

    # SIGKILL: the Lease lapses (15 s after the standby last saw it renewed), then it leads.
    lead_s, reconciled_s, handover = take_over(ns, audit, leader, standby, "kill")
    assert_silent_after(audit, ns, leader, handover)
    print(
        f"SIGKILL of the leader: the standby leads after {lead_s:.1f} s, "
        f"a platform created at the kill is reconciled after {reconciled_s:.1f} s"
    )
    assert reconciled_s < KILL_TARGET

    # A new standby; then SIGTERM of the leader: it releases the Lease on the way out.
    leader = standby
    standby = election.start("c")
    eventually(lambda: standby.leading() is False, timeout=10)
    transitions = int(lease_holder(ns).get("leaseTransitions", 0))
    lead_s, reconciled_s, handover = take_over(ns, audit, leader, standby, "term")
    last = assert_silent_after(audit, ns, leader, handover)
    assert (last.resource, last.verb) == ("leases", "update")  # its release comes last
    print(
        f"SIGTERM of the leader: the standby leads after {lead_s:.1f} s, "
        f"a platform created at the signal is reconciled after {reconciled_s:.1f} s"
    )
    assert lead_s < TERM_TARGET
    assert reconciled_s < TERM_TARGET
    spec = lease_holder(ns)
    assert spec["holderIdentity"] == standby.identity
    assert int(spec["leaseTransitions"]) == transitions + 1
    assert standby.leading() is True
    ns.kubectl("wait", "--for=condition=Ready", "vp/after-term", "--timeout=60s")
    standby.process.stop()
