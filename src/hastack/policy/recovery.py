"""``decide()``: one pass of the instance-HA brain, from an observed snapshot to actions.

Input: the snapshot (signal readings, Nova's services, the workloads and evacuation statuses
the engine fetched because the journal needed them), hastack's memory (host records and the
journal's operations), the settings, and ``now``.  Output: new host records, operations to
write (created or changed, written *before* anything runs), steps to run, audit events, and a
one-line verdict.  No I/O, no clock, no exceptions on odd input.

A recovery is one operation per failed host, ``recover-host``, of idempotent steps:

``fence``        power off through the host's fence levels until one proves it (or an operator
                 confirms); every level failed: ``fence_failed``, retried after a while
``force-down``   Nova: forced_down + disabled with a reason, so evacuations are accepted
``plan``         the evacuation plan (policy/evacuation.py) becomes one step per instance
``evacuate:<id>`` issue (checking Nova first), confirm from the migration record and the server's
                 host, start it if Nova left an ACTIVE one SHUTOFF; on failure retried on
                 another target up to ``retries`` times
``rejoin``       once the host's compute heartbeats again and Nova cleaned up its old
                 instances: re-enable it (automatically or by an operator, per policy)

A **network node** (a host running Neutron agents and no nova-compute) is recovered the same
way when ``fence_network_nodes`` is on, with nothing to force down or evacuate: its recovery
is the fence proof that lets network HA (policy/netrecovery.py) move its legacy routers, and it
rejoins once its agents heartbeat again.

Nothing in a recovery can run before ``fence`` holds a :class:`FenceProof`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from hastack.domain.fencing import FenceAttempt, FenceProof, ProofKind
from hastack.domain.hosts import HostObservation, HostRecord, HostState
from hastack.domain.instances import HostCapacity, PlacementMode, Protect, RecoveryPolicy
from hastack.engine.journal import Operation, OpState, Step, StepState
from hastack.policy import evacuation as evac_policy
from hastack.policy import fencing as fence_policy
from hastack.policy.detection import DetectionProfile, assess
from hastack.policy.guards import GuardInput, GuardPolicy, check
from hastack.ports.compute import ComputeService, EvacuationPhase, EvacuationStatus, Workload

RECOVER = "recover-host"
FENCE, FORCE_DOWN, PLAN, REJOIN = "fence", "force-down", "plan", "rejoin"
EVACUATE = "evacuate"
TERMINAL = (StepState.DONE, StepState.FAILED, StepState.SKIPPED)
STALE_CONFIRMATION = "an operator confirmation older than this recovery was ignored"
NO_NOVA = "network node: no nova-compute service to force down"
NODE_AWAY = "waiting for the node to come back (its Neutron agents heartbeat again)"


# ---------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class Segment:
    name: str
    policy: RecoveryPolicy


@dataclasses.dataclass(frozen=True)
class Settings:
    profile: DetectionProfile
    guards: GuardPolicy
    fence_levels: Mapping[str, tuple[tuple[str, ...], ...]]  # host -> levels of device names
    segments: Mapping[str, Segment]  # host -> its segment (hosts in none are observed only)
    spare_hosts: frozenset[str] = frozenset()
    max_parallel: int = 20
    evacuate_timeout: float = 300.0
    retries: int = 2
    fence_attempts: int = 2
    fence_retry_after: float = 60.0
    action_errors: int = 5  # transient errors tolerated per step before it fails
    rejoin_auto: bool = True
    fence_network_nodes: bool = True  # recover (fence) failed network nodes too


@dataclasses.dataclass(frozen=True)
class Snapshot:
    now: float
    observations: Mapping[str, HostObservation]
    services: Mapping[str, ComputeService]  # by host; empty when Nova could not be read
    hosts_total: int
    hosts_visible: int
    store_ok: bool = True
    paused: bool = False
    maintenance: frozenset[str] = frozenset()
    confirmations: Mapping[str, fence_policy.OperatorConfirmation] = dataclasses.field(
        default_factory=dict
    )
    rejoin_requests: Mapping[str, float] = dataclasses.field(
        default_factory=dict
    )  # host -> when an operator asked to re-enable it
    cliff_ack: float | None = None  # an operator acknowledged the cliff of onsets before this
    workloads: Mapping[str, Workload] = dataclasses.field(default_factory=dict)
    evacuations: Mapping[str, EvacuationStatus] = dataclasses.field(default_factory=dict)
    cleanup_pending: Mapping[str, int] = dataclasses.field(default_factory=dict)
    domains: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    network_nodes: frozenset[str] = frozenset()  # hosts with Neutron agents, no nova-compute
    node_heartbeats: Mapping[str, float] = dataclasses.field(
        default_factory=dict
    )  # network node -> the newest heartbeat of its Neutron agents that are up


@dataclasses.dataclass(frozen=True)
class Run:
    """Run one step now.  ``action`` says what the executor does (the step may need several
    actions over its life: an evacuation is issued, then maybe started)."""

    op: str
    step: str
    action: str  # fence | force-down | evacuate | start | rejoin
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Event:
    subject: str
    message: str


@dataclasses.dataclass(frozen=True)
class Decision:
    records: Mapping[str, HostRecord]
    writes: tuple[Operation, ...]  # new or changed operations, to journal before running
    runs: tuple[Run, ...]
    events: tuple[Event, ...]
    verdict: str
    halted: str | None = None  # why no new action may start (paused, a guard), if so


# ---------------------------------------------------------------- what the engine must fetch


def workloads_needed(ops: Sequence[Operation]) -> set[str]:
    """Hosts whose workload the next :func:`decide` needs (a plan to make, a target to find)."""
    out = set()
    for op in ops:
        if op.state != OpState.OPEN or op.kind != RECOVER:
            continue
        fence, plan = op.step(FENCE), op.step(PLAN)
        # read as soon as the host is fenced, while the force-down runs: the plan is then
        # made, and its first evacuations issued, in the pass that sees the force-down done
        planning = fence and fence.state == StepState.DONE and plan and plan.state != StepState.DONE
        if planning or any(s.params.get("retarget") for s in _evacuations(op)):
            out.add(op.subject)
    return out


def evacuations_to_check(
    ops: Sequence[Operation], running: set[tuple[str, str]]
) -> list[tuple[str, str]]:
    """(instance, source host) of every issued evacuation awaiting confirmation."""
    out = []
    for op in ops:
        if op.state != OpState.OPEN:
            continue
        for s in _evacuations(op):
            if (
                s.state == StepState.RUNNING
                and (op.id, s.id) not in running
                and s.params.get("phase") in ("issued", "starting")
            ):
                out.append((s.params["instance"], op.subject))
    return out


def cleanup_to_check(ops: Sequence[Operation]) -> list[str]:
    """Hosts waiting to rejoin: their pending evacuation clean-up is worth reading."""
    return [
        op.subject
        for op in ops
        if op.state == OpState.OPEN and _ready_for(op, REJOIN) and _step_open(op, REJOIN)
    ]


# ---------------------------------------------------------------- host state from the journal


def host_state(op: Operation) -> tuple[HostState, str]:
    """The lifecycle state an open (or finished) recovery puts its host in, and why."""
    fence = op.step(FENCE)
    if fence is None:
        return HostState.FAILED, "recovery without a fence step"
    if fence.state == StepState.FAILED:
        return HostState.FENCE_FAILED, fence.result
    if fence.state != StepState.DONE:
        return HostState.FENCING, fence.result or "fencing"
    evacs = _evacuations(op)
    plan = op.step(PLAN)
    if plan is None or plan.state != StepState.DONE:
        return HostState.FENCED, fence.result
    if any(s.state not in TERMINAL for s in evacs):
        done = sum(1 for s in evacs if s.state == StepState.DONE)
        return HostState.RECOVERING, f"{done}/{len(evacs)} instances recovered"
    return HostState.RECOVERED, _summary(op)


def _summary(op: Operation) -> str:
    evacs = _evacuations(op)
    done = sum(1 for s in evacs if s.state == StepState.DONE)
    failed = [s for s in evacs if s.state == StepState.FAILED]
    text = f"{done}/{len(evacs)} instances recovered"
    if failed:
        text += f", {len(failed)} failed ({failed[0].params.get('name', '')}: {failed[0].result})"
    return text


# ---------------------------------------------------------------- decide


def decide(
    snapshot: Snapshot,
    records: Mapping[str, HostRecord],
    ops: Sequence[Operation],
    running: set[tuple[str, str]],
    settings: Settings,
) -> Decision:
    """One pass: detection, guards, then every open recovery advanced as far as it can go."""
    now = snapshot.now
    events: list[Event] = []
    new_records: dict[str, HostRecord] = dict(records)
    open_by_host = {op.subject: op for op in ops if op.state == OpState.OPEN and op.kind == RECOVER}

    _detect(snapshot, new_records, open_by_host, settings, events)
    writes: list[Operation] = []
    halted = _open_recoveries(
        snapshot, records, new_records, ops, open_by_host, settings, writes, events
    )

    # 3. every open recovery, as far as it can go this pass
    stop_all = halted is not None and not halted.startswith("halted: cliff")
    in_flight = sum(1 for o, s in running if s.startswith(EVACUATE + ":"))
    for op in ops:
        if op.state == OpState.OPEN and op.kind == RECOVER:
            in_flight += sum(
                1
                for s in _evacuations(op)
                if s.state == StepState.RUNNING and (op.id, s.id) not in running
            )
    runs: list[Run] = []
    budget = [max(0, settings.max_parallel - in_flight)]
    changed_ids = {op.id for op in writes}
    avoid = frozenset(h for h, r in new_records.items() if r.state != HostState.OK)
    fenced = frozenset(h for h, op in open_by_host.items() if proof_of(op) is not None)
    for op in list(open_by_host.values()):
        advanced = _advance(
            op, snapshot, running, settings, (budget, avoid, fenced), runs, events, stop_all
        )
        if advanced is not op and op.id not in changed_ids:
            writes.append(advanced)
        elif advanced is not op:
            writes[[w.id for w in writes].index(op.id)] = advanced
        state, reason = host_state(advanced)
        if advanced.state == OpState.DONE:
            state, reason = HostState.OK, "rejoined"
        prev = new_records.get(op.subject)
        if prev is None or prev.state != state:
            new_records[op.subject] = HostRecord(op.subject, state, now, reason)
            events.append(Event(op.subject, f"{state}: {reason}"))
        else:
            new_records[op.subject] = dataclasses.replace(prev, reason=reason)
    verdict = _verdict(new_records, runs, halted, len(open_by_host))
    return Decision(new_records, tuple(writes), tuple(runs), tuple(events), verdict, halted)


def _detect(
    snapshot: Snapshot,
    new_records: dict[str, HostRecord],
    open_by_host: Mapping[str, Operation],
    settings: Settings,
    events: list[Event],
) -> None:
    """Detection for every host without an open recovery (maintenance: observed only)."""
    now = snapshot.now
    for host, obs in snapshot.observations.items():
        if host in open_by_host:
            continue
        record = new_records.get(host, HostRecord(host, since=now))
        if host in snapshot.maintenance:
            if record.state != HostState.MAINTENANCE:
                new_records[host] = HostRecord(host, HostState.MAINTENANCE, now, "maintenance")
                events.append(Event(host, "maintenance: observed, never acted on"))
            continue
        if record.state in (HostState.MAINTENANCE, HostState.RECOVERED):
            record = HostRecord(host, HostState.OK, now, "back in service")
            new_records[host] = record  # kept even when the fast path below skips assessing
            events.append(Event(host, "ok: back in service"))
        if (
            record.state == HostState.OK
            and not record.lost_since
            and not any(r.lost for r in obs.readings)
            and host in new_records
        ):
            continue  # the common case at 10,000 hosts: healthy and still healthy
        assessment = assess(record, obs, settings.profile, now)
        new_records[host] = assessment.record
        if assessment.changed:
            events.append(Event(host, assessment.verdict))


def _open_recoveries(  # noqa: PLR0917
    snapshot: Snapshot,
    records: Mapping[str, HostRecord],
    new_records: dict[str, HostRecord],
    ops: Sequence[Operation],
    open_by_host: dict[str, Operation],
    settings: Settings,
    writes: list[Operation],
    events: list[Event],
) -> str | None:
    """Guards: which failed hosts may start a recovery now; returns a halt reason, if any."""
    now = snapshot.now
    failed = sorted(
        (
            r
            for h, r in new_records.items()
            if r.state == HostState.FAILED and h not in open_by_host
        ),
        key=lambda r: (r.since, r.host),
    )

    def recoverable(host: str) -> bool:
        if host in snapshot.network_nodes and host not in snapshot.services:
            return settings.fence_network_nodes
        return host in settings.segments

    unprotected = [r.host for r in failed if not recoverable(r.host)]
    candidates = [r.host for r in failed if recoverable(r.host)]
    for host in unprotected:
        if records.get(host, HostRecord(host)).state != HostState.FAILED:
            why = (
                "a network node, and network.fence_nodes is off"
                if host in snapshot.network_nodes
                else "in no segment"
            )
            events.append(Event(host, f"failed, but {why}: not recovered (observed only)"))
    halted: str | None = None
    if snapshot.paused:
        halted = "paused by an operator: no new action"
    guard = check(settings.guards, guard_input(snapshot, new_records, ops, candidates))
    if guard.halted:
        halted = halted or guard.halted
    if candidates and not snapshot.paused:
        for host, why in guard.refused:
            if records.get(host) is None or records[host].reason != f"refused: {why}":
                events.append(Event(host, f"fencing refused: {why}"))
            new_records[host] = dataclasses.replace(new_records[host], reason=f"refused: {why}")
        for host in guard.allowed:
            node = host in snapshot.network_nodes and host not in snapshot.services
            op = _new_recovery(host, new_records[host], settings, now, network_node=node)
            writes.append(op)
            open_by_host[host] = op
            events.append(Event(host, f"recovery {op.id} opened: {new_records[host].reason}"))
    return halted


def guard_input(
    snapshot: Snapshot,
    records: Mapping[str, HostRecord],
    ops: Sequence[Operation],
    candidates: list[str],
) -> GuardInput:
    domains = {h: {**snapshot.domains.get(h, {}), "cloud": "cloud"} for h in snapshot.observations}
    sizes: dict[tuple[str, str], int] = {("cloud", "cloud"): snapshot.hosts_total}
    for host_domains in domains.values():
        for kind, name in host_domains.items():
            if kind != "cloud":
                sizes[(kind, name)] = sizes.get((kind, name), 0) + 1
    onsets = []
    for host, record in records.items():
        lost = record.lost_map()
        if lost and record.state in (HostState.SUSPECT, HostState.FAILED):
            onset = min(lost.values())
            if snapshot.cliff_ack is None or onset > snapshot.cliff_ack:
                onsets.append((host, onset))
    return GuardInput(
        candidates=candidates,
        domains=domains,
        domain_sizes=sizes,
        fence_starts=[(op.subject, op.created) for op in ops if op.kind == RECOVER],
        lost_onsets=onsets,
        hosts_total=snapshot.hosts_total,
        hosts_visible=snapshot.hosts_visible,
        store_ok=snapshot.store_ok,
        now=snapshot.now,
    )


def _new_recovery(
    host: str, record: HostRecord, settings: Settings, now: float, *, network_node: bool = False
) -> Operation:
    levels = [list(level) for level in settings.fence_levels.get(host, ())]
    steps = [
        Step(FENCE, "fence", {"levels": levels, "attempts": []}, updated=now),
        Step(FORCE_DOWN, "force-down", {"errors": 0}, updated=now),
        Step(PLAN, "plan", {}, updated=now),
        Step(REJOIN, "rejoin", {"errors": 0, "network_node": network_node}, updated=now),
    ]
    if network_node:
        steps[1] = Step(FORCE_DOWN, "force-down", {}, StepState.SKIPPED, 0, NO_NOVA, now)
        steps[2] = Step(PLAN, "plan", {}, StepState.DONE, 0, "network node: no instances", now)
    return Operation(
        id=f"recover-{host}-{int(now * 1000)}",
        kind=RECOVER,
        subject=host,
        created=now,
        updated=now,
        steps=steps,
        log=[f"{now:.3f} opened: {record.reason}"],
    )


# ---------------------------------------------------------------- advancing one recovery


class OpEdit:
    """Copy-on-write wrapper: ``advance`` edits steps through it; untouched ops stay shared."""

    def __init__(self, op: Operation, now: float) -> None:
        self.original = op
        self.op = op
        self.now = now

    def _own(self) -> None:
        if self.op is self.original:
            self.op = dataclasses.replace(
                self.original, steps=list(self.original.steps), log=list(self.original.log)
            )

    def set(self, step_id: str, **changes: Any) -> Step:
        self._own()
        for i, s in enumerate(self.op.steps):
            if s.id == step_id:
                params = changes.pop("params", None)
                new = dataclasses.replace(s, **changes, updated=self.now)
                if params is not None:
                    new.params = {**s.params, **params}
                self.op.steps[i] = new
                return new
        raise KeyError(step_id)

    def add_steps(self, steps: list[Step]) -> None:
        self._own()
        rejoin = [s for s in self.op.steps if s.id == REJOIN]
        self.op.steps = [s for s in self.op.steps if s.id != REJOIN] + steps + rejoin

    def log(self, text: str) -> None:
        self._own()
        self.op.log.append(f"{self.now:.3f} {text}")

    def finish(self, state: OpState) -> None:
        self._own()
        self.op.state = state
        self.op.updated = self.now


def _advance(  # noqa: PLR0917
    op: Operation,
    snapshot: Snapshot,
    running: set[tuple[str, str]],
    settings: Settings,
    limits: tuple[list[int], frozenset[str], frozenset[str]],
    runs: list[Run],
    events: list[Event],
    stop_all: bool,
) -> Operation:
    """Advance one recovery.  ``limits``: the evacuation budget left this pass (shared by all
    recoveries), the hosts not to place onto (any host not ``ok``: suspect ones included) and
    the hosts proven off by their own open recovery."""
    avoid = limits[1]
    w = OpEdit(op, snapshot.now)
    host = op.subject
    fence = op.step(FENCE)
    if fence is None:
        return op
    if fence.state != StepState.DONE:
        _advance_fence(w, fence, snapshot, running, settings, runs, events, stop_all)
        fence = w.op.step(FENCE)
        if fence is None or fence.state != StepState.DONE:
            return w.op
    if stop_all:
        return w.op
    down = w.op.step(FORCE_DOWN)
    if down is not None and down.state not in (StepState.DONE, StepState.SKIPPED):
        if down.state != StepState.FAILED and (op.id, FORCE_DOWN) not in running:
            runs.append(Run(op.id, FORCE_DOWN, "force-down", {"host": host}))
        return w.op
    plan = w.op.step(PLAN)
    if plan is not None and plan.state != StepState.DONE:
        workload = snapshot.workloads.get(host)
        if workload is None:
            return w.op
        _make_plan(w, workload, settings, avoid)
        events.append(Event(host, f"plan: {w.op.step(PLAN).result}"))  # type: ignore[union-attr]
    _advance_evacuations(w, snapshot, running, settings, limits, runs, events)
    rejoin = w.op.step(REJOIN)
    if rejoin is not None and rejoin.state != StepState.DONE and _ready_for(w.op, REJOIN):
        _advance_rejoin(w, rejoin, snapshot, running, settings, runs)
    if all(s.state in TERMINAL for s in w.op.steps):
        w.log("recovery finished: " + _summary(w.op))
        w.finish(OpState.DONE)
    return w.op


def _advance_fence(  # noqa: PLR0917
    w: OpEdit,
    fence: Step,
    snapshot: Snapshot,
    running: set[tuple[str, str]],
    settings: Settings,
    runs: list[Run],
    events: list[Event],
    stop_all: bool,
) -> None:
    host, now = w.op.subject, snapshot.now
    if (w.op.id, FENCE) in running:
        return
    confirmation = snapshot.confirmations.get(host)
    if confirmation is not None and confirmation.at < w.op.created:
        # made before this recovery opened (an old one, or before the host failed): it says
        # nothing about the host's power now, so it is not a proof
        if fence.result != STALE_CONFIRMATION:
            w.set(FENCE, result=STALE_CONFIRMATION)
            events.append(Event(host, STALE_CONFIRMATION))
        confirmation = None
    attempts = [FenceAttempt(**a) for a in fence.params.get("attempts", [])]
    levels = [tuple(level) for level in fence.params.get("levels", [])]
    if fence.state == StepState.FAILED:
        if confirmation is None and now - fence.updated < settings.fence_retry_after:
            return
        if confirmation is None:
            w.log("fencing retried after every level failed")
            fence = w.set(FENCE, state=StepState.PENDING, params={"attempts": []})
            attempts = []
    step = fence_policy.next_step(
        host,
        levels,
        attempts,
        attempts_per_device=settings.fence_attempts,
        confirmation=confirmation,
    )
    if step.kind == fence_policy.StepKind.PROVEN and step.proof is not None:
        w.set(FENCE, state=StepState.DONE, result=step.reason, params={"proof": _proof(step.proof)})
        w.log(step.reason)
    elif step.kind == fence_policy.StepKind.FAILED:
        if fence.state != StepState.FAILED:
            w.set(FENCE, state=StepState.FAILED, result=step.reason)
            w.log(step.reason)
            events.append(Event(host, f"fence_failed: {step.reason}; nothing will be evacuated"))
    elif not stop_all:
        if fence.result != step.reason:
            w.set(FENCE, result=step.reason)
        runs.append(
            Run(
                w.op.id,
                FENCE,
                "fence",
                {"host": host, "level": step.level, "devices": step.devices},
            )
        )


def _proof(proof: FenceProof) -> dict[str, Any]:
    return dataclasses.asdict(proof)


def proof_of(op: Operation) -> FenceProof | None:
    """The fence proof journaled in ``op`` (None: the host is not proven off)."""
    fence = op.step(FENCE)
    raw = fence.params.get("proof") if fence and fence.state == StepState.DONE else None
    if not isinstance(raw, dict):
        return None
    try:
        return FenceProof(**{**raw, "kind": ProofKind(raw["kind"])})
    except (TypeError, KeyError, ValueError):
        return None


def _make_plan(w: OpEdit, workload: Workload, settings: Settings, avoid: frozenset[str]) -> None:
    host = w.op.subject
    segment = settings.segments.get(host)
    if segment is None:
        w.set(PLAN, state=StepState.DONE, result="host left its segment: nothing to evacuate")
        return
    targets = destinations(workload, settings, avoid)
    plan = evac_policy.plan_evacuation(
        host,
        workload.instances,
        targets,
        workload.groups,
        workload.instance_hosts,
        workload.host_aggregates,
        segment.policy,
    )
    by_id = {i.id: i for i in workload.instances}
    steps = []
    for e in plan.evacuations:
        inst = by_id[e.instance]
        status = str(inst.status).upper()
        params: dict[str, Any] = {
            "instance": e.instance,
            "name": e.name,
            "target": e.target,
            "wave": e.wave,
            "priority": e.priority,
            "status": status,
            "expect": "SHUTOFF" if status == "SHUTOFF" else "ACTIVE",
            "reset": status == "ERROR",
            "phase": "pending",
            "tried": [],
            "errors": 0,
            "reason": e.reason,
        }
        steps.append(Step(f"{EVACUATE}:{e.instance}", EVACUATE, params, updated=w.now))
    for kind, skips in (
        ("unplaceable", plan.unplaceable),
        ("refused", plan.refused),
        ("unprotected", plan.unprotected),
    ):
        for skip in skips:
            state = StepState.FAILED if kind == "unplaceable" else StepState.SKIPPED
            params = {"instance": skip.instance, "name": skip.name, "skip": kind}
            steps.append(
                Step(f"{EVACUATE}:{skip.instance}", EVACUATE, params, state, 0, skip.reason, w.now)
            )
    w.add_steps(steps)
    w.set(PLAN, state=StepState.DONE, result=plan.verdict)
    w.log(f"plan: {plan.verdict}")


def destinations(
    workload: Workload, settings: Settings, avoid: frozenset[str]
) -> list[HostCapacity]:
    out = []
    for d in workload.destinations:
        if d.host in avoid:
            continue
        spare = d.host in settings.spare_hosts
        out.append(dataclasses.replace(d, spare=spare) if spare != d.spare else d)
    return out


def _advance_evacuations(  # noqa: PLR0917
    w: OpEdit,
    snapshot: Snapshot,
    running: set[tuple[str, str]],
    settings: Settings,
    limits: tuple[list[int], frozenset[str], frozenset[str]],
    runs: list[Run],
    events: list[Event],
) -> None:
    budget, avoid, fenced = limits
    host = w.op.subject
    evacs = _evacuations(w.op)
    # confirmations first: they free capacity for the pending ones
    for s in evacs:
        if s.state != StepState.RUNNING or (w.op.id, s.id) in running:
            continue
        status = snapshot.evacuations.get(s.params["instance"])
        if status is None:
            if s.params.get("phase") == "pending":  # written before a crash: check the world
                runs.append(Run(w.op.id, s.id, "evacuate", _evac_args(host, s, check=True)))
            continue
        target = status.destination or s.params.get("target")
        if status.phase != EvacuationPhase.DONE and target in fenced and target != host:
            # its target died and was fenced mid-rebuild: Nova would wait forever on it
            why = f"its target {target} failed and was fenced before it finished"
            _retry_or_fail(w, s, why, settings, events)
            if w.op.step(s.id).state == StepState.PENDING:  # type: ignore[union-attr]
                # Nova leaves it in REBUILD: reset it, and do not wait on that migration
                w.set(s.id, params={"reset": True, "abandoned": target})
            continue
        _confirm(w, s, status, settings, runs, events)
    # then new issues, wave by wave, within the concurrency budget
    evacs = _evacuations(w.op)
    waiting = [s for s in evacs if s.state not in TERMINAL]
    if not waiting:
        return
    current_wave = min(int(s.params.get("wave", 0)) for s in waiting)
    segment = settings.segments.get(host)
    for s in evacs:
        if s.state != StepState.PENDING or int(s.params.get("wave", 0)) != current_wave:
            continue
        if budget[0] <= 0:
            break
        if s.params.get("retarget") and not _retarget(w, s, snapshot, segment, avoid):
            continue
        budget[0] -= 1
        step = w.op.step(s.id) or s
        runs.append(Run(w.op.id, s.id, "evacuate", _evac_args(host, step, check=step.attempts > 0)))


def _evac_args(host: str, s: Step, *, check: bool) -> dict[str, Any]:
    """``check``: ask Nova first (a resumed or retried step); a step that never ran is issued
    straight away (nothing of ours can be under way)."""
    return {
        "host": host,
        "instance": s.params["instance"],
        "target": s.params.get("target"),
        "reset": bool(s.params.get("reset")),
        "check": check,
        "abandoned": s.params.get("abandoned"),  # a dead, fenced target's migration to ignore
    }


def _confirm(  # noqa: PLR0917
    w: OpEdit,
    s: Step,
    status: EvacuationStatus,
    settings: Settings,
    runs: list[Run],
    events: list[Event],
) -> None:
    host, now = w.op.subject, w.now
    name = s.params.get("name", s.params["instance"])
    expect = s.params.get("expect", "ACTIVE")
    if status.phase == EvacuationPhase.DONE:
        if status.status in (expect, "ACTIVE"):
            w.set(
                s.id,
                state=StepState.DONE,
                result=f"{status.status} on {status.host}",
                params={"phase": "done", "destination": status.host, "confirmed_at": now},
            )
            events.append(Event(host, f"{name} {status.status} on {status.host}"))
            return
        if status.status == "SHUTOFF" and s.params.get("phase") != "starting":
            # Nova (2.95+) left an instance that was ACTIVE shut off: start it
            w.set(s.id, params={"phase": "starting"}, result=f"SHUTOFF on {status.host}: starting")
            runs.append(Run(w.op.id, s.id, "start", {"instance": s.params["instance"]}))
            return
    issued_at = float(s.params.get("issued_at", now))
    failed = status.phase == EvacuationPhase.FAILED
    timed_out = now - issued_at > settings.evacuate_timeout
    if not failed and not timed_out:
        return
    why = status.detail or f"migration {status.migration_status}"
    if timed_out and not failed:
        why = f"not confirmed within {settings.evacuate_timeout:g}s ({status.phase}: {why})"
        w.set(s.id, state=StepState.FAILED, result=why, params={"phase": "failed"})
        events.append(Event(host, f"{name} evacuation failed: {why}"))
        return
    _retry_or_fail(w, s, why, settings, events)


def _retry_or_fail(w: OpEdit, s: Step, why: str, settings: Settings, events: list[Event]) -> None:
    host = w.op.subject
    name = s.params.get("name", s.params["instance"])
    attempts = s.attempts + 1
    tried = [*s.params.get("tried", []), s.params.get("target")]
    if attempts > settings.retries:
        w.set(
            s.id, state=StepState.FAILED, attempts=attempts, result=why, params={"phase": "failed"}
        )
        events.append(Event(host, f"{name} evacuation failed after {attempts} attempt(s): {why}"))
        return
    w.set(
        s.id,
        state=StepState.PENDING,
        attempts=attempts,
        result=f"attempt {attempts} failed: {why}; retrying elsewhere",
        params={"phase": "pending", "tried": tried, "retarget": True},
    )
    events.append(Event(host, f"{name} attempt {attempts} failed ({why}); retrying elsewhere"))


def _retarget(
    w: OpEdit, s: Step, snapshot: Snapshot, segment: Segment | None, avoid: frozenset[str]
) -> bool:
    """Choose a new target for a retried evacuation, away from the targets that failed."""
    if segment is None or segment.policy.placement == PlacementMode.SCHEDULER:
        w.set(s.id, params={"target": None, "retarget": False})
        return True
    workload = snapshot.workloads.get(w.op.subject)
    if workload is None:
        return False  # the engine fetches it for the next pass
    inst = next((i for i in workload.instances if i.id == s.params["instance"]), None)
    if inst is None:  # no longer listed on the failed host: let the issue step check Nova
        w.set(s.id, params={"retarget": False})
        return True
    if s.params.get("abandoned"):  # stuck in REBUILD by a dead target: it will be reset
        inst = dataclasses.replace(inst, status="ERROR", task_state=None)
    tried = {t for t in s.params.get("tried", []) if t}
    destinations = [d for d in workload.destinations if d.host not in tried | avoid]
    plan = evac_policy.plan_evacuation(
        w.op.subject,
        [inst],
        destinations,
        workload.groups,
        workload.instance_hosts,
        workload.host_aggregates,
        dataclasses.replace(segment.policy, protect=Protect.ALL, opt_out=()),
    )
    if plan.evacuations:
        w.set(s.id, params={"target": plan.evacuations[0].target, "retarget": False})
        return True
    why = (plan.unplaceable or plan.refused or [evac_policy.Skip("", "", "no plan")])[0].reason
    w.set(
        s.id, state=StepState.FAILED, result=f"retry impossible: {why}", params={"phase": "failed"}
    )
    return False


def _ready_for(op: Operation, step_id: str) -> bool:
    if step_id != REJOIN:
        return True
    plan = op.step(PLAN)
    return (
        plan is not None
        and plan.state == StepState.DONE
        and all(s.state in TERMINAL for s in _evacuations(op))
    )


def _step_open(op: Operation, step_id: str) -> bool:
    s = op.step(step_id)
    return s is not None and s.state not in TERMINAL


def _advance_rejoin(  # noqa: PLR0917
    w: OpEdit,
    rejoin: Step,
    snapshot: Snapshot,
    running: set[tuple[str, str]],
    settings: Settings,
    runs: list[Run],
) -> None:
    host, now = w.op.subject, snapshot.now
    if (w.op.id, REJOIN) in running:
        return
    if rejoin.params.get("network_node"):
        fence = w.op.step(FENCE)
        beat = snapshot.node_heartbeats.get(host)
        if fence is not None and beat is not None and beat > fence.updated:
            w.set(REJOIN, state=StepState.DONE, result="its Neutron agents heartbeat again")
            w.log("rejoined: its Neutron agents heartbeat again")
        elif rejoin.result != NODE_AWAY:
            w.set(REJOIN, result=NODE_AWAY)
        return
    service = snapshot.services.get(host)
    fence = w.op.step(FENCE)
    fresh = (
        service is not None
        and service.updated_at is not None
        and now - service.updated_at <= settings.profile.nova_stale_after
        # a heartbeat from before the fence is the dead host's last one, not a return: a
        # host found dead by probe and BMC is fenced before Nova's heartbeat goes stale
        and (fence is None or service.updated_at > fence.updated)
    )
    pending = snapshot.cleanup_pending.get(host)
    if not fresh:
        why = "waiting for the host to come back (its compute service heartbeats again)"
    elif pending is None or pending > 0:
        shown = "unknown" if pending is None else str(pending)
        why = f"host is back; waiting for Nova to clean up evacuated instances ({shown} left)"
    elif not settings.rejoin_auto and snapshot.rejoin_requests.get(host, -1.0) < w.op.created:
        why = "host is back and clean; waiting for an operator to re-enable it (rejoin: manual)"
    else:
        runs.append(Run(w.op.id, REJOIN, "rejoin", {"host": host}))
        return
    if rejoin.result != why:
        w.set(REJOIN, result=why)


def _evacuations(op: Operation) -> list[Step]:
    return [s for s in op.steps if s.kind == EVACUATE]


def _verdict(
    records: Mapping[str, HostRecord], runs: Sequence[Run], halted: str | None, recoveries: int
) -> str:
    counts: dict[str, int] = {}
    for r in records.values():
        counts[r.state] = counts.get(r.state, 0) + 1
    order = [s.value for s in HostState]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    text = ", ".join(parts) or "no hosts"
    if recoveries:
        text += f"; {recoveries} recovery(ies) open"
    if runs:
        kinds: dict[str, int] = {}
        for run in runs:
            kinds[run.action] = kinds.get(run.action, 0) + 1
        text += "; running " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    if halted:
        text += f"; {halted}"
    return text


# ---------------------------------------------------------------- results of runs


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the executor reports for one :class:`Run`."""

    run: Run
    ok: bool
    detail: str
    transient: bool = False  # a retryable API error: try again next pass
    attempts: tuple[FenceAttempt, ...] = ()  # fence runs
    issued: bool = False  # evacuate runs: Nova accepted it (or it was already under way)
    already: str | None = None  # evacuate runs: Nova shows it done already (resumed)
    at: float | None = None  # when the executor finished (Nova accepted it); None: unknown


def mark_running(op: Operation, run: Run, now: float) -> Operation:
    """The journal entry written *before* ``run`` executes."""
    w = OpEdit(op, now)
    params: dict[str, Any] = {}
    if run.action == "evacuate":
        params = {"phase": "pending"}
    w.set(run.step, state=StepState.RUNNING, params=params)
    return w.op


def apply_outcome(op: Operation, outcome: Outcome, settings: Settings, now: float) -> Operation:
    """Fold an executor's report into the journal entry."""
    w = OpEdit(op, now)
    run = outcome.run
    step = op.step(run.step)
    if step is None:
        return op
    if run.action == "fence":
        attempts = [*step.params.get("attempts", []), *map(dataclasses.asdict, outcome.attempts)]
        w.set(run.step, state=StepState.PENDING, params={"attempts": attempts})
        for a in outcome.attempts:
            w.log(f"fence level {a.level + 1} {a.device}: {'ok' if a.ok else 'failed'}: {a.reason}")
    elif run.action in ("force-down", "rejoin"):
        _simple(w, step, outcome, settings)
    elif run.action == "evacuate":
        if outcome.already:
            w.set(run.step, params={"phase": "issued", "issued_at": now}, result=outcome.already)
        elif outcome.issued:
            w.set(run.step, params={"phase": "issued", "issued_at": now}, result=outcome.detail)
        elif outcome.transient and int(step.params.get("errors", 0)) < settings.action_errors:
            errors = int(step.params.get("errors", 0)) + 1
            w.set(
                run.step,
                state=StepState.PENDING,
                result=f"transient error {errors}: {outcome.detail}",
                params={"phase": "pending", "errors": errors},
            )
        else:
            _retry_or_fail(w, w.op.step(run.step) or step, outcome.detail, settings, [])
    elif run.action == "start" and not outcome.ok:
        w.set(run.step, params={"phase": "issued"}, result=f"start failed: {outcome.detail}")
    return w.op


def _simple(w: OpEdit, step: Step, outcome: Outcome, settings: Settings) -> None:
    if outcome.ok:
        w.set(step.id, state=StepState.DONE, result=outcome.detail)
        w.log(f"{step.id}: {outcome.detail}")
        return
    errors = int(step.params.get("errors", 0)) + 1
    if outcome.transient or errors < settings.action_errors or step.id == REJOIN:
        w.set(step.id, state=StepState.PENDING, result=outcome.detail, params={"errors": errors})
    else:
        w.set(step.id, state=StepState.FAILED, result=outcome.detail, params={"errors": errors})
    w.log(f"{step.id} failed ({errors}): {outcome.detail}")
