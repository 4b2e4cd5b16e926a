"""The operator's levers on recoveries, pure: the dry run ("what if this host failed now?"),
and retrying or cancelling an open recovery.

The dry run is computed by the same functions a real recovery uses: the guards'
:func:`~hastack.policy.guards.check` on the same input, and
:func:`~hastack.policy.evacuation.plan_evacuation` over the same destinations
(:func:`~hastack.policy.recovery.destinations`, away from every host that is not ok).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from hastack.domain.hosts import HostRecord, HostState
from hastack.engine.journal import Operation, OpState, StepState
from hastack.policy import evacuation as evac_policy
from hastack.policy import recovery
from hastack.policy.guards import check
from hastack.ports.compute import Workload


@dataclasses.dataclass(frozen=True)
class WhatIf:
    host: str
    segment: str | None
    fencing: str  # whether the guards would let it be fenced now, and why
    plan: evac_policy.EvacuationPlan | None  # None: nothing would be evacuated
    verdict: str


def what_if(
    host: str,
    workload: Workload | None,
    settings: recovery.Settings,
    *,
    snapshot: recovery.Snapshot | None,
    records: Mapping[str, HostRecord],
    ops: Sequence[Operation],
) -> WhatIf:
    """What a recovery of ``host`` would do if it failed now, from the leader's last
    ``snapshot`` and ``records``; ``workload`` is the host's workload read from Nova now."""
    segment = settings.segments.get(host)
    fencing = _fencing(host, settings, snapshot, records, ops)
    if segment is None:
        why = f"{host} is in no segment: observed only, nothing would be fenced or evacuated"
        return WhatIf(host, None, "not recovered: in no segment", None, why)
    if workload is None:
        return WhatIf(host, segment.name, fencing, None, f"if {host} failed now: {fencing}")
    avoid = frozenset({host} | {h for h, r in records.items() if r.state != HostState.OK})
    plan = evac_policy.plan_evacuation(
        host,
        workload.instances,
        recovery.destinations(workload, settings, avoid),
        workload.groups,
        workload.instance_hosts,
        workload.host_aggregates,
        segment.policy,
    )
    verdict = f"if {host} failed now: {fencing}; then {plan.verdict}"
    return WhatIf(host, segment.name, fencing, plan, verdict)


def _fencing(
    host: str,
    settings: recovery.Settings,
    snapshot: recovery.Snapshot | None,
    records: Mapping[str, HostRecord],
    ops: Sequence[Operation],
) -> str:
    if snapshot is None:
        return "unknown whether the guards allow fencing (no tick yet)"
    if snapshot.paused:
        return "fencing would wait: automatic actions are paused"
    if host in snapshot.maintenance:
        return "nothing would happen: the host is in maintenance"
    if not settings.fence_levels.get(host):
        return "it has no fence device: only an operator's confirmation could prove it off"
    decision = check(settings.guards, recovery.guard_input(snapshot, records, ops, [host]))
    if decision.allowed:
        return "the guards would allow fencing it"
    why = decision.halted or dict(decision.refused).get(host, "refused")
    return f"the guards would refuse fencing it: {why}"


# ---------------------------------------------------------------- retry, cancel


class LeverRefused(Exception):
    """The lever does not apply to this operation now (the API answers 409 with this)."""


def retryable(op: Operation) -> str | None:
    """Why ``op`` cannot be retried now, or None when it can."""
    if op.kind != recovery.RECOVER:
        return f"{op.kind} operations cannot be retried"
    if op.state != OpState.OPEN:
        return f"{op.id} is {op.state.value}: only an open recovery can be retried"
    if not any(s.state == StepState.FAILED for s in op.steps):
        return f"{op.id} has no failed step to retry"
    return None


def retry(op: Operation, by: str, comment: str, now: float) -> Operation:
    """Every failed step of an open recovery pending again, now: fencing from its first
    level (without waiting ``fence_retry_after``), failed or unplaceable evacuations
    re-planned away from the targets that failed (their attempt counts start over)."""
    why = retryable(op)
    if why is not None:
        raise LeverRefused(why)
    w = recovery.OpEdit(op, now)
    retried = []
    for s in op.steps:
        if s.state != StepState.FAILED:
            continue
        retried.append(s.id)
        if s.id == recovery.FENCE:
            w.set(s.id, state=StepState.PENDING, attempts=0, params={"attempts": []})
        elif s.kind == recovery.EVACUATE:
            params = {"phase": "pending", "errors": 0, "retarget": True, "skip": None}
            w.set(s.id, state=StepState.PENDING, attempts=0, result="retry asked", params=params)
        else:
            w.set(s.id, state=StepState.PENDING, params={"errors": 0})
    note = f": {comment}" if comment else ""
    w.log(f"retry by {by} of {len(retried)} failed step(s){note}")
    return w.op


def cancel(op: Operation, by: str, comment: str, now: float) -> Operation:
    """Stop an open recovery: steps not started are skipped (one already running finishes:
    a call in flight cannot be recalled).  The caller puts the host in maintenance, or the
    next pass would detect it failed and open a new recovery."""
    if op.kind != recovery.RECOVER:
        raise LeverRefused(f"{op.kind} operations cannot be cancelled")
    if op.state != OpState.OPEN:
        raise LeverRefused(f"{op.id} is {op.state.value}: only an open recovery can be cancelled")
    w = recovery.OpEdit(op, now)
    note = f": {comment}" if comment else ""
    for s in op.steps:
        if s.state == StepState.PENDING:
            w.set(s.id, state=StepState.SKIPPED, result=f"cancelled by {by}")
    w.log(f"cancelled by {by}{note}; {op.subject} goes to maintenance")
    w.finish(OpState.CANCELLED)
    return w.op
