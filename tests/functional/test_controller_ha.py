"""hastack's own HA with real processes: three ``hastack serve`` controllers on a real 3-member
etcd cluster, against ``hastack sim serve`` (Nova, Placement, BMCs over the wire).  The leader
is SIGKILLed, or SIGSTOPped past its lease, in the middle of an evacuation of 50 VMs; another
controller must finish it, and no VM may be evacuated twice.  etcd loses its raft leader, or a
follower, or the whole cluster goes down with every controller: the journal keeps the recovery.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from hastack.clock import SystemClock
from hastack.drivers.store.etcd import EtcdStore
from hastack.engine.engine import LEADER
from hastack.engine.journal import Journal, Operation, OpState, StepState
from hastack.etcd_cluster import LocalEtcdCluster
from hastack.ports.store import Lease
from hastack.sim.process import SimProcess, boot_servers, sim_process, stop_processes
from tests.etcd_required import require_etcd

pytestmark = [pytest.mark.etcd, pytest.mark.wire, pytest.mark.timeout(240)]

VMS = 50
HOST = "compute01"
LEASE_TTL = 3.0
TICK = 0.5


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"not within {seconds:g}s: {what}")


class Cluster:
    """The simulator, etcd, and three controllers as processes."""

    def __init__(self, sim: SimProcess, etcd: LocalEtcdCluster, workdir: Path) -> None:
        self.sim = sim
        self.etcd = etcd
        self.workdir = workdir
        self.store = EtcdStore(etcd.endpoints, SystemClock())
        self.controllers: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, name: str, endpoints: list[str]) -> Path:
        raw = yaml.safe_load((self.sim.workdir / "hastack.yaml").read_text())
        raw["profile"] = "fast"
        raw["controller"] = {"name": name, "tick": TICK, "lease_ttl": LEASE_TTL}
        raw["store"] = {"driver": "etcd", "endpoints": endpoints, "timeout": 1.0}
        raw["segments"] = [
            {"name": "all", "hosts": ["*"], "recovery": {"protect": "all", "shared_storage": True}}
        ]
        raw["recovery"] = {"max_parallel": 10}
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        path.chmod(0o600)
        return path

    def start(self, name: str, endpoints: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        config = self.config(name, endpoints)
        cmd = [sys.executable, "-m", "hastack", "serve", "--config", str(config)]
        self.controllers[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_all(self, *, own_member: bool = False, first: str | None = None) -> Lease:
        """ctl-1..3, each with every etcd endpoint (``first`` in front: the one they all talk
        to until it fails), or (``own_member``) only its own member's, as when etcd runs
        beside each controller; returns the first leader's lease."""
        everyone = sorted(self.etcd.endpoints, key=lambda e: e != first)
        for n, name in enumerate(("ctl-1", "ctl-2", "ctl-3")):
            endpoints = [self.etcd.endpoints[n]] if own_member else everyone
            self.start(name, endpoints)
        lease: Lease = wait_for(self.leader, 20, "a controller leads")
        return lease

    def leader(self) -> Lease | None:
        with contextlib.suppress(Exception):
            return self.store.current(LEADER)
        return None

    def operations(self) -> list[Operation]:
        return [op for op, _ in Journal(self.store).operations()]

    def recovery(self) -> Operation | None:
        ops = [op for op in self.operations() if op.subject == HOST]
        return ops[0] if ops else None

    def evacuations(self) -> collections.Counter[str]:
        """Evacuation requests Nova received, per instance (its migration records)."""
        return collections.Counter(self._migrations())

    def servers(self) -> dict[str, tuple[str, str]]:
        """Every VM's status and host, by name."""
        from hastack.drivers.openstack.connection import connect  # noqa: PLC0415

        conn = connect(self.sim.workdir / "clouds.yaml", "hastack-sim")
        try:
            found = conn.compute.servers(details=True, all_projects=True)
            return {s.name: (s.status, s.compute_host) for s in found}
        finally:
            conn.close()

    def _migrations(self) -> list[str]:
        from hastack.drivers.openstack.connection import connect  # noqa: PLC0415

        conn = connect(self.sim.workdir / "clouds.yaml", "hastack-sim")
        try:
            data = conn.compute.get(
                "/os-migrations?migration_type=evacuation", microversion="2.59"
            ).json()
        finally:
            conn.close()
        return [m["instance_uuid"] for m in data["migrations"]]

    def stop(self) -> None:
        stop_processes(self.controllers.values())
        self.store.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_etcd()
    args = ["--hosts", "6", "--instances", "0", "--seed", "4", "--evacuate-seconds", "4"]
    args += ["--report-interval", "2", "--service-down-time", "12", "--network-nodes", "0"]
    args += ["--host-vcpus", "160", "--host-memory-mb", "393216"]
    with (
        LocalEtcdCluster(tmp_path / "etcd") as etcd,
        sim_process(tmp_path / "sim", args) as sim,
    ):
        c = Cluster(sim, etcd, tmp_path)
        try:
            boot(c, VMS)
            yield c
        finally:
            c.stop()


def boot(c: Cluster, count: int) -> None:
    boot_servers(c.sim.workdir, HOST, count, prefix="ha", timeout=60)


def fail_host(c: Cluster) -> None:
    r = requests.post(
        f"{c.sim.state['control_url']}/hosts/{HOST}/fail", json={"mode": "power"}, timeout=10
    )
    r.raise_for_status()


def mid_evacuation(c: Cluster) -> Operation | None:
    """The recovery once some evacuations are confirmed and others are not."""
    op = c.recovery()
    if op is None:
        return None
    evacs = [s for s in op.steps if s.kind == "evacuate"]
    done = sum(1 for s in evacs if s.state == StepState.DONE)
    return op if evacs and 0 < done < len(evacs) else None


def finished(c: Cluster) -> Operation | None:
    op = c.recovery()
    evacs = [s for s in op.steps if s.kind == "evacuate"] if op else []
    return op if evacs and all(s.state == StepState.DONE for s in evacs) else None


def assert_each_evacuated_once(c: Cluster, op: Operation) -> None:
    counts = c.evacuations()
    moved = [s.params["instance"] for s in op.steps if s.kind == "evacuate"]
    assert len(moved) == VMS
    twice = {i: n for i, n in counts.items() if n > 1}
    assert not twice, f"evacuated more than once: {twice}"
    assert sorted(counts) == sorted(moved)


def test_sigkill_of_the_leader_mid_evacuation_is_finished_by_another_without_repeats(
    cluster: Cluster,
) -> None:
    c = cluster
    first = c.start_all()
    fail_host(c)
    wait_for(lambda: mid_evacuation(c), 60, "the leader in the middle of the evacuations")
    killed_at = time.monotonic()
    c.controllers[first.holder].send_signal(signal.SIGKILL)
    successor = wait_for(
        lambda: (lease := c.leader()) is not None and lease.holder != first.holder and lease,
        LEASE_TTL + 10,
        "another controller takes the lease",
    )
    takeover = time.monotonic() - killed_at
    assert successor.epoch > first.epoch
    assert takeover <= LEASE_TTL + TICK + 2.0, takeover  # TTL + a tick, + etcd's 500 ms lessor
    op = wait_for(lambda: finished(c), 90, "the successor finishes the recovery")
    assert_each_evacuated_once(c, op)
    # the recovery stays open only for the host's return (its rejoin step)
    op = c.recovery()
    assert op is not None and op.state == OpState.OPEN
    assert {s.id for s in op.steps if s.state != StepState.DONE} == {"rejoin"}
    assert op.epoch == successor.epoch  # the successor wrote it last


def test_a_leader_frozen_past_its_lease_does_not_act_when_it_wakes(cluster: Cluster) -> None:
    c = cluster
    first = c.start_all()
    frozen = c.controllers[first.holder]
    fail_host(c)
    wait_for(lambda: mid_evacuation(c), 60, "the leader in the middle of the evacuations")
    frozen.send_signal(signal.SIGSTOP)
    wait_for(
        lambda: (lease := c.leader()) is not None and lease.holder != first.holder,
        LEASE_TTL + 10,
        "another controller takes the lease",
    )
    time.sleep(2 * TICK)
    frozen.send_signal(signal.SIGCONT)  # it wakes believing it still leads
    op = wait_for(lambda: finished(c), 90, "the successor finishes the recovery")
    time.sleep(3 * TICK)  # give the old leader time to try anything
    assert_each_evacuated_once(c, op)
    log = (c.workdir / f"{first.holder}.log").read_text(errors="replace")
    assert "lease" in log.lower(), log[-2000:]  # it noticed it lost the lease
    lease = c.leader()
    assert lease is not None and lease.holder != first.holder


def test_etcd_losing_its_raft_leader_mid_evacuation_loses_nothing(cluster: Cluster) -> None:
    c = cluster
    c.start_all()
    fail_host(c)
    wait_for(lambda: mid_evacuation(c), 60, "the leader in the middle of the evacuations")
    member = c.etcd.leader()
    assert member is not None
    c.etcd.kill(member)
    op = wait_for(lambda: finished(c), 90, "the recovery finishes on the remaining members")
    assert_each_evacuated_once(c, op)


def test_a_controller_cut_off_from_etcd_stops_and_another_finishes(cluster: Cluster) -> None:
    """Each controller talks to the etcd member beside it.  The leader's member freezes: the
    leader cannot renew, so it must stop acting; the others still have a quorum and one of
    them takes over."""
    c = cluster
    first = c.start_all(own_member=True)
    fail_host(c)
    wait_for(lambda: mid_evacuation(c), 60, "the leader in the middle of the evacuations")
    index = int(first.holder.rpartition("-")[2]) - 1
    c.etcd.pause(c.etcd.members[index])
    try:
        successor = wait_for(
            lambda: (lease := c.leader()) is not None and lease.holder != first.holder and lease,
            LEASE_TTL + 15,
            "a controller that still reaches etcd takes the lease",
        )
        assert successor.epoch > first.epoch
        op = wait_for(lambda: finished(c), 90, "the successor finishes the recovery")
        assert_each_evacuated_once(c, op)
    finally:
        c.etcd.resume(c.etcd.members[index])


def test_an_etcd_follower_lost_mid_evacuation_costs_no_leadership_and_rejoins(
    cluster: Cluster,
) -> None:
    """Every controller talks first to an etcd member that is not the raft leader; it is
    SIGKILLed mid-evacuation.  The other two keep a quorum and each request fails over to them
    at once (a dead member refuses connections), so the leader's lease never lapses: the same
    controller leads, with the same fencing token, to the end.  Restarted on its data
    directory, the member rejoins and serves the journal the others wrote meanwhile."""
    c = cluster
    raft_leader = wait_for(c.etcd.leader, 10, "etcd has a raft leader")
    member = next(m for m in c.etcd.members if m is not raft_leader)
    first = c.start_all(first=member.client_url)
    fail_host(c)
    wait_for(lambda: mid_evacuation(c), 60, "the leader in the middle of the evacuations")
    raft_leader = wait_for(c.etcd.leader, 10, "etcd has a raft leader")
    if raft_leader is member:  # re-elected meanwhile (a busy machine): still lose a follower
        member = next(m for m in c.etcd.members if m is not raft_leader)
    c.etcd.kill(member)
    leaders: set[tuple[str, int]] = set()

    def finished_watching_the_lease() -> Operation | None:
        lease = c.leader()
        if lease is not None:
            leaders.add((lease.holder, lease.epoch))
        return finished(c)

    op = wait_for(finished_watching_the_lease, 90, "the recovery finishes on two members")
    assert_each_evacuated_once(c, op)
    assert leaders == {(first.holder, first.epoch)}, leaders
    assert op.epoch == first.epoch
    c.etcd.restart(member)
    alone = EtcdStore([member.client_url], SystemClock())
    try:
        seen = {o.id: o for o, _ in Journal(alone).operations()}
    finally:
        alone.close()
    assert [s.state for s in seen[op.id].steps if s.kind == "evacuate"] == [StepState.DONE] * VMS


def in_flight(c: Cluster) -> Operation | None:
    """The recovery mid-evacuation, with some evacuations sent to Nova and not confirmed."""
    op = mid_evacuation(c)
    running = op and any(s.kind == "evacuate" and s.state == StepState.RUNNING for s in op.steps)
    return op if running else None


def done(op: Operation) -> set[str]:
    return {s.id for s in op.steps if s.state == StepState.DONE}


def test_everything_killed_at_once_mid_evacuation_is_resumed_from_the_journal(
    cluster: Cluster,
) -> None:
    """Every controller and every etcd member is SIGKILLed in the same instant, with
    evacuations confirmed, in flight and pending; the simulated cloud runs on.  etcd restarts
    on its data directories, then the controllers: the journal still holds the recovery and
    all it recorded, and the new leader resumes it, confirming the evacuations that were in
    flight instead of repeating them."""
    c = cluster
    first = c.start_all()
    fail_host(c)
    before: Operation = wait_for(lambda: in_flight(c), 60, "evacuations done and in flight")
    procs = [*c.controllers.values(), *(m.proc for m in c.etcd.members if m.proc is not None)]
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.wait(10)
    c.etcd.restart_all()
    kept = c.recovery()
    assert kept is not None and kept.id == before.id and kept.state == OpState.OPEN
    assert done(before) <= done(kept)  # nothing the journal recorded is lost
    issued = {s.id for s in kept.steps if s.kind == "evacuate" and s.state == StepState.RUNNING}
    assert issued
    logs = {name: c.workdir / f"{name}.log" for name in c.controllers}
    offsets = {name: path.stat().st_size for name, path in logs.items()}
    c.start_all()
    op = wait_for(lambda: finished(c), 90, "the restarted controllers finish the recovery")
    assert op.id == before.id and op.created == before.created
    # etcd kept the old lease alive across its own restart; no new process may take it back
    # (same name or not): the recovery finished under a new, greater fencing token
    assert op.epoch > first.epoch
    assert_each_evacuated_once(c, op)
    # Nova refuses a second evacuation of a moved instance, so the count above cannot show a
    # blind repeat: the journal can (an attempt or an error counted on the step)
    again = [s.id for s in op.steps if s.id in issued and (s.attempts or s.params.get("errors"))]
    assert not again, f"in flight at the crash, then issued again: {again}"
    servers = c.servers()
    assert len(servers) == VMS
    assert all(state == "ACTIVE" and host != HOST for state, host in servers.values()), servers
    resumed = {
        name
        for name, path in logs.items()
        if "resuming 1 open operation" in path.read_bytes()[offsets[name] :].decode()
    }
    assert resumed, "no restarted controller resumed the journal's recovery"
