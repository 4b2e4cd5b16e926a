"""Recovery timelines: when each failed host was declared failed, fenced, its first evacuation
issued, and its first and last instance confirmed — read back from the journal.

Used by the demo and the benchmarks, so both report the same figures the same way.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from hastack.engine.journal import Operation, StepState
from hastack.policy import recovery

_LOG = re.compile(r"^(\d+\.\d+) (.*)$")


@dataclasses.dataclass(frozen=True)
class Timeline:
    host: str
    declared: float  # the recovery opened: the host was declared failed
    fenced: float | None
    first_issued: float | None
    first_active: float | None
    last_active: float | None
    evacuations: int
    recovered: int
    failed: int
    skipped: int

    def relative(self, failure_at: float) -> dict[str, float | None]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - failure_at, 3)

        return {
            "declared": rel(self.declared),
            "fenced": rel(self.fenced),
            "first_evacuate_issued": rel(self.first_issued),
            "first_active": rel(self.first_active),
            "all_active": rel(self.last_active) if self.failed == 0 else None,
            "last_active": rel(self.last_active),
        }


def of(op: Operation) -> Timeline:
    fenced = None
    for line in op.log:
        m = _LOG.match(line)
        if m and ("power off confirmed" in m.group(2) or "confirmed off by" in m.group(2)):
            fenced = float(m.group(1))
            break
    evacs = [s for s in op.steps if s.kind == recovery.EVACUATE and not s.params.get("skip")]
    issued = [float(s.params["issued_at"]) for s in evacs if "issued_at" in s.params]
    confirmed = [
        float(s.params["confirmed_at"])
        for s in evacs
        if s.state == StepState.DONE and "confirmed_at" in s.params
    ]
    return Timeline(
        host=op.subject,
        declared=op.created,
        fenced=fenced,
        first_issued=min(issued, default=None),
        first_active=min(confirmed, default=None),
        last_active=max(confirmed, default=None),
        evacuations=len(evacs),
        recovered=len(confirmed),
        failed=sum(1 for s in evacs if s.state == StepState.FAILED),
        skipped=sum(1 for s in op.steps if s.kind == recovery.EVACUATE and s.params.get("skip")),
    )


def of_all(ops: Iterable[Operation]) -> dict[str, Timeline]:
    return {op.subject: of(op) for op in ops if op.kind == recovery.RECOVER}
