"""The audit trail: decisions with their reasons and operator requests with their names, in the
store, read back by anyone; written under the leader's lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hastack.cli.main import main
from hastack.clock import VirtualClock
from hastack.controller import request, withdraw
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.audit import CHUNK, AuditEntry, AuditTrail
from hastack.errors import LeadershipLost
from hastack.sim.build import CloudSpec
from hastack.sim.scenario import Fault, Scenario, ScenarioSpec


@pytest.fixture
def store() -> SqliteStore:
    return SqliteStore(":memory:", VirtualClock(start=1000.0))


def entry(at: float, subject: str = "compute01", message: str = "m") -> AuditEntry:
    return AuditEntry(at, subject, message, "ctl-1 (epoch 3)")


def test_entries_come_back_in_time_order_filtered_and_limited(store: SqliteStore) -> None:
    trail = AuditTrail(store)
    trail.record([entry(30.0, "compute02", "c"), entry(30.0, "compute01", "d")])
    trail.record([entry(10.0, message="a"), entry(10.5, message="b")])
    assert [e.message for e in trail.read()] == ["a", "b", "c", "d"]
    assert [e.message for e in trail.read(subject="compute01")] == ["a", "b", "d"]
    assert [e.message for e in trail.read(since=20.0)] == ["c", "d"]
    assert [e.message for e in trail.read(limit=2)] == ["c", "d"]


def test_a_large_tick_is_split_into_keys_etcd_accepts(store: SqliteStore) -> None:
    trail = AuditTrail(store)
    trail.record([entry(5.0, message=str(n)) for n in range(CHUNK * 2 + 1)])
    assert len(store.list("/hastack/audit/")) == 3
    assert [e.message for e in trail.read()] == [str(n) for n in range(CHUNK * 2 + 1)]


def test_a_deposed_leader_cannot_add_to_it(store: SqliteStore) -> None:
    clock = VirtualClock(start=0.0)
    shared = SqliteStore(":memory:", clock)
    old = shared.acquire("leader", "ctl-1", ttl=5.0)
    assert old is not None
    AuditTrail(shared).record([entry(1.0)], old)
    clock.advance(6.0)
    new = shared.acquire("leader", "ctl-2", ttl=5.0)
    assert new is not None
    with pytest.raises(LeadershipLost):
        AuditTrail(shared).record([entry(7.0, message="stale")], old)
    assert [e.message for e in AuditTrail(shared).read()] == ["m"]


def test_pruning_keeps_the_window_and_the_cap(store: SqliteStore) -> None:
    trail = AuditTrail(store, keep=100.0, max_keys=3)
    for at in (1.0, 50.0, 150.0, 160.0, 170.0, 180.0):
        trail.record([entry(at, message=str(at))])
    assert trail.prune(200.0, every=0) == 3  # 1.0 and 50.0 too old; then the cap drops 150.0
    assert [e.at for e in trail.read()] == [160.0, 170.0, 180.0]
    assert trail.prune(201.0, every=300) == 0  # not due yet


def test_an_unreadable_key_is_skipped(store: SqliteStore) -> None:
    store.put("/hastack/audit/00000000001.000000-x", "not json")
    AuditTrail(store).record([entry(2.0)])
    assert [e.at for e in AuditTrail(store).read()] == [2.0]


def test_operator_requests_are_audited_with_the_operator(store: SqliteStore) -> None:
    request(store, "confirm", "compute07", {"operator": "alice", "comment": "PDU off, checked"})
    withdraw(store, "maintenance", "compute08", operator="bob")
    got = [(e.subject, e.message, e.by, e.kind) for e in AuditTrail(store).read()]
    assert got == [
        ("compute07", "request confirm: PDU off, checked", "operator alice", "request"),
        ("compute08", "withdraw maintenance", "operator bob", "request"),
    ]


def test_the_leader_audits_every_decision_with_its_reason() -> None:
    """A power loss in virtual time: declared failed (with the signals), fenced, planned,
    evacuated; each decision in the trail, by the leader and its epoch."""
    spec = ScenarioSpec(cloud=CloudSpec(hosts=6, instances=20, seed=2),
                        faults=[Fault(5, "compute03", "power")])  # fmt: skip
    with Scenario(spec) as s:
        assert s.run(300, until=lambda sc: sc.state_of("compute03") == "recovered")
        trail = AuditTrail(s.store).read(subject="compute03")
        epoch = s.engine.lease.epoch if s.engine.lease else -1
    messages = [e.message for e in trail]
    assert any(m.startswith("recovery ") and "opened: failed" in m for m in messages), messages
    assert any(m.startswith("plan: ") for m in messages), messages
    assert all(e.by == f"controller-1 (epoch {epoch})" for e in trail)
    assert [e.at for e in trail] == sorted(e.at for e in trail)


def test_a_dynamic_configuration_change_is_audited(tmp_path: Path) -> None:
    config = tmp_path / "hastack.yaml"
    db = tmp_path / "journal.db"
    config.write_text(f"cloud: {{name: c}}\nstore: {{driver: sqlite, path: {db}}}\n")
    args = ["config", "set", "--config", str(config), "--operator", "dave"]
    assert main([*args, "recovery.max_parallel=5"]) == 0
    assert main([*args, "recovery.max_parallel=0"]) == 1  # refused: nothing written, no entry
    store = SqliteStore(db, VirtualClock(start=time.time()))
    try:
        entries = AuditTrail(store).read()
    finally:
        store.close()
    assert [(e.message, e.by) for e in entries] == [
        ("config revision 1: recovery.max_parallel 20 -> 5", "operator dave")
    ]
