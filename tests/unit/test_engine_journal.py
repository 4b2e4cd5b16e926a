"""The journal over the sqlite store: create, CAS updates, resume of open operations, the
fencing token, and a corrupt entry halting rather than being guessed at."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hastack.clock import VirtualClock
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.journal import (
    Journal,
    JournalCorrupt,
    Operation,
    OpState,
    Step,
    StepState,
)
from hastack.errors import LeadershipLost, RevisionConflict


@pytest.fixture
def env(tmp_path: Path):
    clock = VirtualClock()
    store = SqliteStore(tmp_path / "j.db", clock)
    lease = store.acquire("leader", "ctl-1", ttl=10.0)
    assert lease is not None
    yield clock, store, Journal(store), lease
    store.close()


def recovery(op_id: str = "op-1") -> Operation:
    return Operation(
        id=op_id,
        kind="recover-host",
        subject="compute03",
        created=1.0,
        steps=[Step("fence", "fence"), Step("evacuate:vm-1", "evacuate", {"instance": "vm-1"})],
    )


def test_round_trip_and_resume_open_operations(env) -> None:
    _, _, journal, lease = env
    rev = journal.create(recovery(), lease)
    loaded = journal.load("op-1")
    assert loaded is not None
    op, revision = loaded
    assert revision == rev and op.epoch == lease.epoch
    assert op.step("evacuate:vm-1") == Step("evacuate:vm-1", "evacuate", {"instance": "vm-1"})
    op.step("fence").state = StepState.RUNNING  # written before the side effect
    rev = journal.save(op, revision, lease)
    done = recovery("op-2")
    done.state = OpState.DONE
    journal.create(done, lease)
    opened = journal.operations(open_only=True)
    assert [(o.id, o.step("fence").state) for o, _ in opened] == [("op-1", StepState.RUNNING)]
    assert len(journal.operations()) == 2


def test_ids_are_unique_and_stale_writes_conflict(env) -> None:
    _, _, journal, lease = env
    rev = journal.create(recovery(), lease)
    with pytest.raises(RevisionConflict):
        journal.create(recovery(), lease)
    op, _ = journal.load("op-1") or (None, 0)
    assert op is not None
    journal.save(op, rev, lease)
    with pytest.raises(RevisionConflict):
        journal.save(op, rev, lease)  # someone (we) wrote since rev


def test_a_deposed_leader_cannot_advance_an_operation(env) -> None:
    clock, store, journal, lease = env
    rev = journal.create(recovery(), lease)
    clock.advance(11.0)
    successor = store.acquire("leader", "ctl-2", ttl=10.0)
    assert successor is not None and successor.epoch > lease.epoch
    op, _ = journal.load("op-1") or (None, 0)
    assert op is not None
    op.step("fence").state = StepState.DONE
    with pytest.raises(LeadershipLost):
        journal.save(op, rev, lease)
    journal.save(op, rev, successor)
    reread = journal.load("op-1")
    assert reread is not None and reread[0].epoch == successor.epoch


def test_a_corrupt_entry_halts_instead_of_being_skipped(env) -> None:
    _, store, journal, _ = env
    store.put("/hastack/operations/broken", "{not json")
    with pytest.raises(JournalCorrupt, match="broken"):
        journal.operations()
    assert store.get("/hastack/operations/broken") is not None  # nothing lost


def test_stored_form_is_the_dataclass_form() -> None:
    """to_json() writes exactly what dataclasses.asdict() gave (entries written by earlier
    versions and by this one read the same), and the step index follows edits of ``steps``."""
    op = recovery()
    op.log.append("1.000 opened")
    op.steps[1].params["nested"] = {"a": [1, 2]}
    expected = dataclasses.asdict(op)
    expected.pop("_index")
    assert json.loads(op.to_json()) == json.loads(json.dumps(expected))
    assert Operation.from_json(op.to_json()) == op
    assert op.step("fence") is op.steps[0]
    op.steps = [Step("rejoin", "rejoin"), *op.steps]  # replaced and reordered
    assert op.step("fence") is op.steps[1] and op.step("rejoin") is op.steps[0]
    op.steps[1] = Step("fence", "fence", state=StepState.DONE)
    assert op.step("fence").state == StepState.DONE
    assert op.step("nope") is None


def test_operation_rows_count_evacuations_and_moves_alike() -> None:
    from hastack.engine.engine import summarize  # noqa: PLC0415

    host = recovery("op-h")
    host.steps[1].state = StepState.DONE
    net = Operation(
        "op-n",
        "recover-agent",
        "agent-1",
        2.0,
        steps=[
            Step("plan", "plan", {"host": "network01"}, StepState.DONE),
            Step("router:r1", "router", {"router": "r1"}, StepState.DONE),
            Step("router:r2", "router", {"router": "r2"}),
        ],
        log=["2.000 opened: agent down and host network01 fenced"],
    )
    rows = {r["id"]: r for r in summarize([host, net])}
    assert rows["op-h"]["kind"] == "recover-host" and rows["op-h"]["host"] == "compute03"
    assert (rows["op-h"]["actions"], rows["op-h"]["done"]) == (1, 1)
    assert rows["op-n"]["host"] == "network01" and rows["op-n"]["kind"] == "recover-agent"
    assert (rows["op-n"]["actions"], rows["op-n"]["done"]) == (2, 1)
    assert rows["op-n"]["reason"] == "opened: agent down and host network01 fenced"
