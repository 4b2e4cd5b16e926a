"""The journal: every recovery is an operation of idempotent steps, stored before they run.

An operation is one JSON document under ``/hastack/operations/<id>`` in the store.  Every write
is compare-and-set on the document's revision *and* guarded by the leader's lease, so two
controllers can never both advance an operation, and a deposed leader cannot write at all.
A new leader lists the open operations and resumes each from its steps' states, checking the
world before it repeats a step that was ``running`` when the old leader died.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from hastack.errors import PermanentError
from hastack.ports.store import Lease, Store

PREFIX = "/hastack/operations/"


class JournalCorrupt(PermanentError):
    """A journal entry cannot be read.  The engine halts rather than guess: the journal is the
    record of what was done, and acting without it could repeat a step."""


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # written before the side effect: after a crash, check the world
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class OpState(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclasses.dataclass
class Step:
    id: str  # unique within the operation and stable: e.g. "fence", "evacuate:<instance>"
    kind: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: StepState = StepState.PENDING
    attempts: int = 0
    result: str = ""
    updated: float = 0.0


@dataclasses.dataclass
class Operation:
    id: str
    kind: str  # e.g. "recover-host"
    subject: str  # the host (or agent) it is about
    created: float
    state: OpState = OpState.OPEN
    updated: float = 0.0
    epoch: int = 0  # the lease epoch of the leader that last wrote it
    steps: list[Step] = dataclasses.field(default_factory=list)
    log: list[str] = dataclasses.field(default_factory=list)  # verdicts, oldest first
    # step id -> its position in ``steps``: checked on every use, rebuilt when stale (steps
    # are replaced and appended freely), so a 1,000-step operation is not scanned per lookup
    _index: dict[str, int] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def step(self, step_id: str) -> Step | None:
        steps = self.steps
        pos = self._index.get(step_id)
        if pos is not None and pos < len(steps) and steps[pos].id == step_id:
            return steps[pos]
        self._index = {s.id: n for n, s in enumerate(steps)}
        pos = self._index.get(step_id)
        return None if pos is None else steps[pos]

    def to_dict(self) -> dict[str, Any]:
        """The stored form (what ``dataclasses.asdict`` gave, without its deep copies)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "created": self.created,
            "state": self.state.value,
            "updated": self.updated,
            "epoch": self.epoch,
            "steps": [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "params": s.params,
                    "state": s.state.value,
                    "attempts": s.attempts,
                    "result": s.result,
                    "updated": s.updated,
                }
                for s in self.steps
            ],
            "log": self.log,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Operation:
        raw = json.loads(text)
        steps = [Step(**{**s, "state": StepState(s["state"])}) for s in raw.pop("steps", [])]
        return cls(**{**raw, "state": OpState(raw["state"]), "steps": steps})


class Journal:
    def __init__(self, store: Store, prefix: str = PREFIX) -> None:
        self.store = store
        self.prefix = prefix

    def _key(self, op_id: str) -> str:
        return f"{self.prefix}{op_id}"

    def create(self, op: Operation, lease: Lease) -> int:
        """Store a new operation; RevisionConflict if one with this id exists."""
        op.epoch = lease.epoch
        return self.store.put(self._key(op.id), op.to_json(), expect=0, lease=lease)

    def load(self, op_id: str) -> tuple[Operation, int] | None:
        entry = self.store.get(self._key(op_id))
        if entry is None:
            return None
        return Operation.from_json(entry.value), entry.revision

    def save(self, op: Operation, revision: int, lease: Lease) -> int:
        """Write ``op`` if nobody else wrote it since ``revision`` and ``lease`` still holds."""
        op.epoch = lease.epoch
        return self.store.put(self._key(op.id), op.to_json(), expect=revision, lease=lease)

    def operations(self, *, open_only: bool = False) -> list[tuple[Operation, int]]:
        out = []
        for entry in self.store.list(self.prefix):
            try:
                op = Operation.from_json(entry.value)
            except (ValueError, TypeError, KeyError) as exc:
                raise JournalCorrupt(f"journal entry {entry.key} is unreadable: {exc}") from exc
            if not open_only or op.state == OpState.OPEN:
                out.append((op, entry.revision))
        return out
