"""Chaos on a control plane of the suite's own (tests/chaos/conftest.py), with two operator
replicas behind one Lease, as a Deployment runs them (a replica that exits is started again):

(a) the API server is SIGKILLed and started again while 300 platforms are being applied;
(b) etcd is frozen (SIGSTOP) for 20 s while the operator has work under way;
(c) the leader is SIGKILLed every 10 s for two minutes while platforms are created, changed and
    deleted (a tick that finds no leader, the Lease still lapsing after the last kill, passes);
(d) the operators are cut off from the API server while platforms and children change and etcd's
    history is compacted: kopf's watches resume from a compacted revision, get 410 Gone and list
    again, the children's informers list again (they never resume a broken watch).

`make test` runs (b) and (d) (about 3 min with the control plane's start); (a) and (c), the
long ones (marker chaos_long), run with the others in `make test-chaos`.

Each ends in the exact final state (convergence.py: children exactly what the spec renders,
nothing orphaned or duplicated, status current and Ready), with no operator exit the test did
not cause and no operator write at rest; each prints its timeline (what broke when, when it
converged, the operator's writes).
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.handle import KubectlError
from tests.chaos.conftest import Scenario, writes_line
from tests.chaos.replicas import Member, Replicas
from tests.cluster.conftest import eventually
from tests.faultproxy import FaultProxy
from vod_operator.kube import CHILD_KINDS

pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.local_control_plane]

#: Specs shared by many platforms (never changed in place: a change applies a new dict).
ONE: dict[str, Any] = {"replicas": 1, "podDisruptionBudget": {"enabled": False}}
TWO: dict[str, Any] = {**ONE, "replicas": 2}
#: Seconds of doing nothing after convergence in which the operator must not write.
REST = 15.0


def names(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(start, start + count)]


def settle(scene: Scenario, timeout: float) -> str:
    """Converged (exact), then at rest: no operator write and no operator exit the test did not
    cause. The summary line."""
    seconds, verdict = scene.converged(timeout)
    scene.timeline.mark(f"converged after {seconds:.1f} s more: {verdict}")
    rest = scene.at_rest(REST)
    assert not rest, f"the operator still writes at rest: {writes_line(rest)}"
    replicas = scene.replicas
    assert replicas is not None
    assert replicas.unexpected_exits() == [], replicas.summary()
    summary = (
        f"{verdict}; operator writes {writes_line(scene.operator_writes())}; "
        f"0 at rest ({REST:.0f} s); replicas: {replicas.summary()}"
    )
    scene.timeline.mark(summary)
    scene.timeline.mark("the lead (UTC): " + ", ".join(replicas.lead_changes()))
    return summary


def apply_in_batches(scene: Scenario, batches: list[dict[str, Any]], done: list[int]) -> None:
    """Apply each batch (name -> spec), again and again until the API server takes it (as a
    user or a CI job retries); `done` counts the platforms applied."""
    for batch in batches:
        while True:
            try:
                scene.apply(batch, timeout=60)
                break
            except (KubectlError, subprocess.TimeoutExpired):
                time.sleep(1)
        done.append(len(batch))


def test_etcd_frozen_for_20_seconds(scene: Scenario) -> None:
    faults, timeline = scene.cluster.faults, scene.timeline
    replicas = scene.start_operators()
    scene.apply(dict.fromkeys(names("vp", 30), ONE))
    seconds, verdict = scene.converged(timeout=180)
    timeline.mark(f"30 platforms converged after {seconds:.1f} s: {verdict}")
    # Work under way when etcd stops answering: 10 new platforms, 10 scaled to 2.
    more = dict.fromkeys(names("vp", 10, start=30), ONE)
    scaled = dict.fromkeys(names("vp", 10), TWO)
    scene.apply({**more, **scaled})
    with faults.paused("etcd"):
        timeline.mark("SIGSTOP etcd (10 platforms created and 10 scaled just before)")
        time.sleep(20)
    timeline.mark("SIGCONT etcd after 20 s")
    settle(scene, timeout=240)
    assert replicas.restarts() == 0, replicas.summary()


@pytest.mark.chaos_long
def test_leader_killed_every_10_seconds_for_two_minutes(
    scene: Scenario, rng: random.Random
) -> None:
    timeline = scene.timeline
    replicas = scene.start_operators()
    specs = dict.fromkeys(names("vp", 20), ONE)
    scene.apply(specs)
    seconds, verdict = scene.converged(timeout=180)
    timeline.mark(f"20 platforms converged after {seconds:.1f} s: {verdict}")
    counter = len(specs)
    kills: list[str] = []
    changes = {"created": 0, "changed": 0, "deleted": 0}
    began = time.monotonic()
    next_kill, next_change = began + 10, began + 1
    skipped = 0
    while (now := time.monotonic()) < began + 120:
        if now >= next_kill:
            next_kill += 10
            killed = replicas.kill_leader()
            if killed is None:  # a hand-over under way (the Lease lapses 15 s after a kill)
                skipped += 1
            else:
                kills.append(killed)
                timeline.mark(f"SIGKILL the leader (replica {killed}), kill {len(kills)}")
        if now >= next_change:
            what = change_something(scene, specs, rng, counter)
            counter += what == "created"
            changes[what] += 1
            next_change = now + 2
        time.sleep(0.2)
    timeline.mark(
        f"chaos over: {len(kills)} kills ({skipped} ticks found no leader); platforms {changes}"
    )
    assert len(kills) >= 4, f"only {len(kills)} kills in two minutes"
    settle(scene, timeout=240)
    eventually(lambda: all(m.replica.process.process for m in replicas.members), timeout=60)
    assert replicas.restarts() == len(kills), replicas.summary()


def change_something(
    scene: Scenario, specs: dict[str, dict[str, Any]], rng: random.Random, counter: int
) -> str:
    """Create, change or delete one platform (keeping 10 to 30 of them); which it did."""
    roll = rng.random()
    if len(specs) < 30 and (roll < 0.3 or len(specs) <= 10):
        name, spec = f"vp-{counter:03d}", random_spec(rng)
        scene.apply({name: spec})
        specs[name] = spec
        return "created"
    name = rng.choice(sorted(specs))
    if roll < 0.5:
        scene.delete(name)
        del specs[name]
        return "deleted"
    spec = random_spec(rng, specs[name])
    scene.apply({name: spec})
    specs[name] = spec
    return "changed"


def random_spec(rng: random.Random, old: dict[str, Any] | None = None) -> dict[str, Any]:
    """A spec differing from `old` in its replicas, its PodDisruptionBudget or its signed URLs
    (a new Secret child, a new pod template)."""
    spec: dict[str, Any] = {
        "replicas": rng.choice([1, 2]),
        "podDisruptionBudget": {"enabled": rng.random() < 0.5},
        "security": {"signedUrls": {"enabled": rng.random() < 0.5}},
    }
    while old is not None and spec == old:
        spec = random_spec(rng)
    return spec


#: What the operator logs (at DEBUG) when it lists a kind again: kopf restarting a watch on
#: 410 Gone, or a children's informer listing (after 410 Gone or a broken watch: informer.py).
RELISTED = re.compile(r"Restarting the watch-stream for (\S+)|informer (\w+): listed")
#: How long the operators stay cut off (shorter than the renew deadline: the leader keeps the lead,
#: so what follows the gap is the relist, not a hand-over).
GAP = 5.0


def test_watches_expire_after_an_etcd_compaction(scene: Scenario, tmp_path: Path) -> None:
    """Without the API server's watch cache, a watch resumed from a revision older than etcd's
    compaction gets 410 Gone (kopf then lists again). The operators reach the API server through
    a proxy that the test cuts: during the gap a child is deleted, platforms change, are created
    and deleted, and etcd's history is compacted; after it, every change must be reconciled."""
    faults, timeline = scene.cluster.faults, scene.timeline
    took = faults.restart("kube-apiserver", ("--watch-cache=false",))
    timeline.mark(f"kube-apiserver restarted without its watch cache ({took:.1f} s)")
    config = yaml.safe_load(scene.cluster.kube.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    proxy = FaultProxy(int(server.rsplit(":", 1)[1]))
    try:
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        kubeconfig = tmp_path / "through-proxy.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        # DEBUG: kopf logs each watch it restarts on 410 Gone. Discovery and the check for
        # platforms deleted unseen every 5 s (default 60 s).
        replicas = scene.start_operators(
            kubeconfig, VOD_OPERATOR_LOG_LEVEL="DEBUG", VOD_OPERATOR_MONITORING_PROBE_SECONDS="5"
        )
        scene.apply(dict.fromkeys(names("vp", 6), ONE))
        seconds, verdict = scene.converged(timeout=120)
        timeline.mark(f"6 platforms converged after {seconds:.1f} s: {verdict}")

        proxy.refuse()
        cut = time.monotonic()
        timeline.mark("operators cut off from the API server")
        scene.ns.kubectl("delete", "deployment", "vp-000-stream", "--wait=false")
        scene.apply({"vp-001": TWO, "vp-006": ONE})
        scene.delete("vp-002")
        revision = faults.compact_etcd()
        timeline.mark(
            f"meanwhile: deleted deployment vp-000-stream, scaled vp-001 to 2, created vp-006, "
            f"deleted vp-002; etcd compacted at revision {revision}"
        )
        offsets = {m.label: m.replica.process.log_path.stat().st_size for m in replicas.members}
        time.sleep(max(0.0, GAP - (time.monotonic() - cut)))  # their retries fail meanwhile
        proxy.resume()
        timeline.mark(f"operators reconnected after a {time.monotonic() - cut:.1f} s gap")
        settle(scene, timeout=120)
        relisted = relisted_since(replicas, offsets)
        timeline.mark(f"listed again after the gap: {relisted}")
        leader = replicas.leader()
        assert leader is not None
        assert {"videoplatforms", "deployments"} <= relisted[leader.label], relisted
        # vp-002, deleted during the gap, is forgotten too (its series go): the relist does not
        # report it, the operator's check for vanished platforms does.
        shown = eventually(
            lambda: platforms_shown(leader, scene) == set(scene.expected), timeout=30
        )
        timeline.mark(f"the leader's metrics show {sorted(platforms_shown(leader, scene))}")
        assert shown
        assert replicas.restarts() == 0, replicas.summary()
    finally:
        proxy.close()
        if scene.replicas is not None:
            scene.replicas.stop()
        took = faults.restart("kube-apiserver")
        timeline.mark(f"kube-apiserver restarted with its watch cache again ({took:.1f} s)")


def platforms_shown(member: Member, scene: Scenario) -> set[str]:
    """The platforms of the scenario's namespace in a replica's per-platform metrics."""
    return {
        dict(labels)["platform"]
        for name, labels in member.replica.process.metrics()
        if name == "vod_platform_phase" and dict(labels)["namespace"] == scene.ns.name
    }


def _plural(watched: str | None, kind: str | None) -> str:
    """`deployments` of kopf's `deployments.v1.apps` or of the informer's `Deployment`."""
    return watched.split(".", 1)[0] if watched else CHILD_KINDS[str(kind)].plural


def relisted_since(replicas: Replicas, offsets: dict[str, int]) -> dict[str, set[str]]:
    """Per replica, the resources it listed again since `offsets` (its log's sizes)."""
    found: dict[str, set[str]] = {}
    for member in replicas.members:
        with member.replica.process.log_path.open("rb") as log:
            log.seek(offsets[member.label])
            text = log.read().decode(errors="replace")
        found[member.label] = {
            _plural(match.group(1), match.group(2)) for match in RELISTED.finditer(text)
        }
    return found


@pytest.mark.chaos_long
def test_api_server_killed_while_300_platforms_are_applied(scene: Scenario) -> None:
    faults, timeline = scene.cluster.faults, scene.timeline
    scene.start_operators()
    wanted = names("vp", 300)
    batches = [dict.fromkeys(wanted[i : i + 25], ONE) for i in range(0, len(wanted), 25)]
    done: list[int] = []
    applier = threading.Thread(target=apply_in_batches, args=(scene, batches, done))
    timeline.mark("applying 300 platforms, 25 a kubectl apply")
    applier.start()
    try:
        eventually(lambda: sum(done) >= 125, timeout=180, interval=0.1)
        timeline.mark(f"SIGKILL kube-apiserver ({sum(done)} of 300 applied)")
        faults.kill("kube-apiserver")
        took = faults.start("kube-apiserver", timeout=180)
        timeline.mark(f"kube-apiserver serves again ({took:.1f} s after the kill)")
    finally:
        applier.join(timeout=300)
    assert sum(done) == 300
    timeline.mark("all 300 applied")
    settle(scene, timeout=480)
