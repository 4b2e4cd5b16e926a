"""The engine's state as the API's documents (api/models.py): plain conversions, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from hastack.api import models
from hastack.domain.hosts import HostRecord, HostState
from hastack.engine.audit import AuditEntry
from hastack.engine.engine import EngineView, summarize
from hastack.engine.journal import Operation, OpState
from hastack.policy import guards, netrecovery, recovery
from hastack.policy.evacuation import Skip
from hastack.policy.levers import WhatIf
from hastack.ports.store import Lease


def status(
    view: EngineView, controller: str, lease: Lease | None, profile: str, paused: bool
) -> models.Status:
    settings = view.settings
    policy = settings.guards
    by_state = dict.fromkeys((s.value for s in HostState), 0)
    for record in view.records.values():
        by_state[record.state.value] += 1
    budgets: list[models.BudgetUse] = []
    halted = None
    snapshot = view.snapshot
    if snapshot is not None:
        data = recovery.guard_input(snapshot, view.records, view.ops, [])
        budgets = [models.BudgetUse(**vars(b)) for b in guards.usage(policy, data)]
        halted = guards.check(policy, _with_candidate(data)).halted
    return models.Status(
        controller=controller,
        leading=view.leading,
        leader=lease.holder if lease else None,
        epoch=lease.epoch if lease else None,
        profile=profile,
        paused=paused,
        verdict=view.verdict,
        tick_at=view.at or None,
        hosts_total=snapshot.hosts_total if snapshot else len(view.records),
        hosts_visible=snapshot.hosts_visible if snapshot else 0,
        hosts_by_state=by_state,
        operations_open=sum(1 for op in view.ops if op.state == OpState.OPEN),
        guards=models.Guards(
            halted=halted,
            budgets=budgets,
            max_fences_per_tick=policy.max_fences_per_tick,
            cliff_hosts=policy.cliff_hosts,
            cliff_percent=policy.cliff_percent,
            cliff_window=policy.cliff_window,
            min_visible_fraction=policy.min_visible_fraction,
        ),
    )


def _with_candidate(data: guards.GuardInput) -> guards.GuardInput:
    """The halt check runs only when some host asks to be fenced: ask for a placeholder."""
    return dataclasses.replace(data, candidates=["(any host)"])


def host(view: EngineView, name: str, open_ops: Mapping[str, str] | None = None) -> models.HostView:
    """``open_ops``: host -> its open operation, when the caller has it for every host."""
    record = view.records.get(name) or HostRecord(name)
    snapshot = view.snapshot
    signals: list[models.SignalView] = []
    maintenance = False
    latest = view.readings.get(name, {})
    for signal in sorted(latest):
        r = latest[signal]
        signals.append(
            models.SignalView(signal=r.signal.value, lost=r.lost, at=r.at, detail=r.detail)
        )
    if snapshot is not None:
        maintenance = name in snapshot.maintenance
    segment = view.settings.segments.get(name)
    current = (open_ops if open_ops is not None else _open_ops(view)).get(name)
    return models.HostView(
        name=name,
        state=record.state.value,
        since=record.since,
        reason=record.reason,
        maintenance=maintenance,
        segment=segment.name if segment else None,
        signals=signals,
        fence_levels=fence_levels(view, name),
        operation=current,
    )


def fence_levels(view: EngineView, name: str) -> list[list[models.FenceDeviceView]]:
    return [
        [models.FenceDeviceView(name=d, type=d.split(" ", 1)[0]) for d in level]
        for level in view.settings.fence_levels.get(name, ())
    ]


def _open_ops(view: EngineView) -> dict[str, str]:
    return {op.subject: op.id for op in view.ops if op.state == OpState.OPEN}


def hosts(view: EngineView, state: str | None) -> models.HostList:
    names = sorted(n for n, r in view.records.items() if state is None or r.state.value == state)
    open_ops = _open_ops(view)
    return models.HostList(hosts=[host(view, n, open_ops) for n in names])


def host_detail(view: EngineView, name: str, ops: Sequence[Operation]) -> models.HostDetail:
    base = host(view, name)
    mine = [op for op in ops if _host_of(op) == name]
    return models.HostDetail(**base.model_dump(), operations=operations(mine))


def _host_of(op: Operation) -> str:
    if op.kind in netrecovery.KINDS:
        plan = op.step(netrecovery.PLAN)
        return str(plan.params.get("host", op.subject)) if plan else op.subject
    return op.subject


def operations(ops: Iterable[Operation]) -> list[models.OperationSummary]:
    ordered = sorted(ops, key=lambda op: (op.created, op.id), reverse=True)
    rows = summarize(ordered)
    return [
        models.OperationSummary(**row, created=op.created, updated=op.updated)
        for row, op in zip(rows, ordered, strict=True)
    ]


def operation(op: Operation) -> models.OperationDetail:
    (summary,) = operations([op])
    steps = [
        models.StepView(
            id=s.id,
            kind=s.kind,
            state=s.state.value,
            attempts=s.attempts,
            result=s.result,
            updated=s.updated,
            target=_target(s.params),
        )
        for s in op.steps
    ]
    return models.OperationDetail(**summary.model_dump(), epoch=op.epoch, steps=steps, log=op.log)


def _target(params: Mapping[str, object]) -> str | None:
    for key in ("destination", "target", "to"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def what_if(answer: WhatIf, view: EngineView) -> models.WhatIf:
    plan = answer.plan

    def skipped(items: Iterable[Skip]) -> list[models.SkippedInstance]:
        return [
            models.SkippedInstance(instance=s.instance, name=s.name, reason=s.reason) for s in items
        ]

    return models.WhatIf(
        host=answer.host,
        verdict=answer.verdict,
        segment=answer.segment,
        fencing=answer.fencing,
        fence_levels=fence_levels(view, answer.host),
        evacuations=[
            models.PlannedEvacuation(
                instance=e.instance,
                name=e.name,
                target=e.target,
                wave=e.wave,
                priority=e.priority,
                reason=e.reason,
            )
            for e in (plan.evacuations if plan else ())
        ],
        unplaceable=skipped(plan.unplaceable if plan else ()),
        refused=skipped(plan.refused if plan else ()),
        unprotected=skipped(plan.unprotected if plan else ()),
        spare_hosts_used=list(plan.spare_hosts_used) if plan else [],
    )


def events(entries: Iterable[AuditEntry]) -> models.EventList:
    return models.EventList(
        events=[
            models.EventView(at=e.at, subject=e.subject, message=e.message, by=e.by, kind=e.kind)
            for e in entries
        ]
    )
