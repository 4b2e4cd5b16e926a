"""``decide_network()``: one pass of the network-HA brain, from Neutron's state to actions.

Pure like :func:`hastack.policy.recovery.decide`: no I/O, no clock, no exceptions on odd input.
It reads the agents Neutron lists, the routers and networks when the engine fetched them
(:func:`reads_needed` says when), the health of routers being verified, and the host lifecycle
that instance HA keeps (a network node is a host like any other: detected with two witnesses,
fenced through its fence levels).

An agent is **down** when Neutron says it is not alive, or its heartbeat is older than
``stale_after``.  It is **dead** (confirmed) when it is down and a second witness agrees: its
host failed or is being or was fenced, its BMC reads power off, or it has been silent for
``agent_grace`` (an agent-only failure, its host still up).  An agent on a host proven off
(fenced after the agent's last beat, or a suspect host whose BMC reads power off) is dead at
once, without waiting for Neutron's ``agent_down_time``: that is what makes a network node's
power loss recover in seconds.  Nothing is done for a host in maintenance.  A dead L3 or DHCP
agent opens one operation, ``recover-agent``, whose steps are:

``plan``               routers (policy/network.py ``plan_router_moves``) or networks
                       (``plan_dhcp``) become one step each
``router:<id>``        remove the binding from the dead agent, add it to the target, then verify:
                       the router's ports ACTIVE with ``binding:host_id`` the target's host and
                       its floating IPs ACTIVE (an HA router: the new binding reports
                       ``active``/``standby``), within ``verify_timeout``; else retried on another
                       agent, up to ``retries`` times
``network:<id>:<n>``   drop the dead DHCP binding and/or add a live agent

**The safety rule.**  A legacy router, or a distributed router's SNAT part, on a node that may
still forward must not be brought up beside its old copy.  So those moves run only with a proof
that the source node is off: its host fenced through instance HA (``fenced``, ``recovering``,
``recovered``), or its BMC reading power off.  Without one they wait, and the step's result says
why.  Policy ``unfenced_moves`` allows them after ``unfenced_grace`` of silence instead, with the
risk documented (docs/network-ha.md).  Replacing an HA router's dead binding and restoring DHCP
only add redundancy (keepalived and dnsmasq tolerate a stale peer), so they need the agent dead,
not the node proven off.

Guards: nothing new while paused or while instance HA's guards halt everything; no new operation
when more than ``max_dead_fraction`` of the L3 and DHCP agents are down at once (a message-bus
outage or a partition looks like that), until an operator acknowledges it (``ack-cliff``).

A resumed step is simply run again: every scheduling call is idempotent (the port's contract).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hastack.domain.hosts import HostState
from hastack.domain.network import AgentInfo, AgentKind, NetworkInfo, RouterInfo
from hastack.engine.journal import Operation, OpState, Step, StepState
from hastack.policy import network as plan_policy
from hastack.policy.recovery import FENCE, RECOVER, TERMINAL, Event, OpEdit, Outcome, Run
from hastack.ports.network import (
    ROUTER_GATEWAY,
    ROUTER_INTERFACE,
    ROUTER_SNAT,
    RouterHealth,
)

RECOVER_AGENT = "recover-agent"
REBALANCE = "rebalance"
KINDS = (RECOVER_AGENT, REBALANCE)
PLAN = "plan"
ROUTER, NETWORK = "router", "network"
MOVE_ROUTER, MOVE_NETWORK = "move-router", "move-network"

FAILED_HOST = frozenset(
    {
        HostState.FAILED,
        HostState.FENCING,
        HostState.FENCED,
        HostState.FENCE_FAILED,
        HostState.RECOVERING,
        HostState.RECOVERED,
    }
)
PROVEN_OFF = frozenset({HostState.FENCED, HostState.RECOVERING, HostState.RECOVERED})
HA_SETTLED = ("active", "standby")


@dataclasses.dataclass(frozen=True)
class NetSettings:
    stale_after: float = 25.0  # a heartbeat older than this is down (besides alive: false)
    agent_grace: float = 60.0  # an agent down this long, its host up, is dead (agent-only)
    unfenced_moves: bool = False  # policy: legacy/SNAT moves without a fence proof...
    unfenced_grace: float = 300.0  # ...once the agent has been silent this long
    dhcp_agents_per_network: int = 2
    max_parallel: int = 100  # move calls in flight
    verify_timeout: float = 60.0
    retries: int = 2
    action_errors: int = 5  # transient API errors tolerated per step
    max_dead_fraction: float = 0.5


@dataclasses.dataclass(frozen=True)
class NetSnapshot:
    now: float
    agents: Mapping[str, AgentInfo]  # every agent, by id
    agents_ok: bool  # False: Neutron's agent list could not be read this pass
    routers: Sequence[RouterInfo] | None = None  # None: not read this pass
    networks: Sequence[NetworkInfo] | None = None
    health: Mapping[str, RouterHealth] = dataclasses.field(default_factory=dict)
    host_states: Mapping[str, HostState] = dataclasses.field(default_factory=dict)
    power_off: frozenset[str] = frozenset()  # hosts whose BMC reads power off
    paused: bool = False
    halted: str | None = None  # instance HA's guards halted every action
    cliff_ack: float | None = None
    rebalance: float | None = None  # an operator asked for a rebalance at this time


@dataclasses.dataclass(frozen=True)
class NetDecision:
    writes: tuple[Operation, ...]
    runs: tuple[Run, ...]
    events: tuple[Event, ...]
    verdict: str
    anomalies: Mapping[str, str]  # HA router -> what is wrong with it (when routers were read)
    rebalance_taken: bool = False  # the operator's rebalance request became an operation


@dataclasses.dataclass(frozen=True)
class Needs:
    """What the engine should read from Neutron for the next pass."""

    routers: bool = False
    networks: bool = False
    health: frozenset[str] = frozenset()  # routers being verified
    ha_states: frozenset[str] = frozenset()  # HA routers whose ha_state per agent to read


# ---------------------------------------------------------------- agent status


def is_down(agent: AgentInfo, now: float, settings: NetSettings) -> bool:
    if not agent.alive:
        return True
    return agent.heartbeat_at is not None and now - agent.heartbeat_at > settings.stale_after


def silent_for(agent: AgentInfo, now: float) -> float:
    return max(0.0, now - agent.heartbeat_at) if agent.heartbeat_at is not None else 0.0


def off_since(snap: NetSnapshot, ops: Sequence[Operation]) -> dict[str, float]:
    """Hosts proven off (fenced: instance HA's state says so) -> when their fence completed."""
    out: dict[str, float] = {}
    for op in ops:
        if op.kind != RECOVER or snap.host_states.get(op.subject) not in PROVEN_OFF:
            continue
        fence = op.step(FENCE)
        if fence is not None and fence.state == StepState.DONE:
            out[op.subject] = max(out.get(op.subject, fence.updated), fence.updated)
    return out


def _host_off(agent: AgentInfo, snap: NetSnapshot, fenced_at: Mapping[str, float]) -> str:
    """Why ``agent``'s host is known off (so the agent cannot be running), or ''."""
    fenced = fenced_at.get(agent.host)
    if fenced is not None and (agent.heartbeat_at is None or agent.heartbeat_at <= fenced):
        return f"host {agent.host} fenced, agent's last beat before the fence"
    state = snap.host_states.get(agent.host, HostState.OK)
    if agent.host in snap.power_off and state not in (HostState.OK, HostState.MAINTENANCE):
        return f"host {agent.host} {state} and its BMC reports power off"
    return ""


def dead_reason(
    agent: AgentInfo,
    snap: NetSnapshot,
    settings: NetSettings,
    fenced_at: Mapping[str, float] | None = None,
) -> str | None:
    """Why ``agent`` counts as dead (two witnesses), or None while it does not.

    A host proven off is proof enough on its own, before Neutron's ``agent_down_time`` runs out:
    an agent whose last beat predates the fence (or whose host's BMC reads power off now)
    cannot be running. A beat after the fence means the node is back."""
    state = snap.host_states.get(agent.host, HostState.OK)
    if state == HostState.MAINTENANCE:
        return None  # an operator is working on the node: observe, never act
    off = _host_off(agent, snap, fenced_at or {})
    if off:
        return off
    if not is_down(agent, snap.now, settings):
        return None
    if state in FAILED_HOST:
        return f"agent down and host {agent.host} {state}"
    if agent.host in snap.power_off:
        return f"agent down and {agent.host}'s BMC reports power off"
    silent = silent_for(agent, snap.now)
    if silent >= settings.agent_grace:
        return f"agent silent {silent:.0f}s with {agent.host} up (agent-only failure)"
    return None


def move_proof(agent: AgentInfo | None, snap: NetSnapshot, settings: NetSettings) -> str | None:
    """What allows moving a legacy router (or SNAT) off ``agent``'s node, or None."""
    if agent is None:
        return "the source agent no longer exists"
    state = snap.host_states.get(agent.host)
    if state in PROVEN_OFF:
        return f"{agent.host} fenced ({state})"
    if agent.host in snap.power_off:
        return f"{agent.host}'s BMC reports power off"
    silent = silent_for(agent, snap.now)
    if settings.unfenced_moves and silent >= settings.unfenced_grace:
        return f"unfenced: silent {silent:.0f}s >= unfenced_grace (policy unfenced_moves)"
    return None


# ---------------------------------------------------------------- what to read


def reads_needed(ops: Sequence[Operation], running: Collection[tuple[str, str]]) -> Needs:
    routers = networks = False
    health: set[str] = set()
    ha: set[str] = set()
    for op in ops:
        if op.state != OpState.OPEN or op.kind not in KINDS:
            continue
        plan = op.step(PLAN)
        planning = plan is not None and plan.state not in TERMINAL
        kind = str(plan.params.get("agent_kind", ROUTER)) if plan else ROUTER
        if planning and kind == ROUTER:
            routers = True
        if planning and kind == NETWORK:
            networks = True
        for s in op.steps:
            if s.state in TERMINAL or s.kind not in (ROUTER, NETWORK):
                continue
            if s.params.get("phase") in ("retarget", "unplaced"):
                routers = routers or s.kind == ROUTER
                networks = networks or s.kind == NETWORK
            if (
                s.kind == ROUTER
                and s.params.get("phase") == "verifying"
                and (op.id, s.id) not in running
            ):
                if s.params.get("mode") == "ha":
                    ha.add(s.params["router"])
                    routers = True
                else:
                    health.add(s.params["router"])
    return Needs(routers, networks, frozenset(health), frozenset(ha))


# ---------------------------------------------------------------- decide


def decide_network(
    snap: NetSnapshot,
    ops: Sequence[Operation],
    running: Collection[tuple[str, str]],
    settings: NetSettings,
    previous_anomalies: Mapping[str, str],
) -> NetDecision:
    now = snap.now
    events: list[Event] = []
    writes: dict[str, Operation] = {}
    runs: list[Run] = []
    mine = [op for op in ops if op.kind in KINDS and op.state == OpState.OPEN]
    watched = [a for a in snap.agents.values() if a.kind in (AgentKind.L3, AgentKind.DHCP)]
    fenced_at = off_since(snap, ops)
    down = {
        a.id
        for a in snap.agents.values()
        if is_down(a, now, settings) or _host_off(a, snap, fenced_at)
    }
    halted = _halt(snap, watched, down & {a.id for a in watched}, settings)
    if snap.agents_ok and halted is None:
        for op in _open_for_dead(snap, ops, watched, settings, fenced_at, events):
            writes[op.id] = op
            mine.append(op)
    taken = False
    if snap.rebalance is not None and halted is None and snap.routers is not None:
        if not any(op.kind == REBALANCE for op in mine):
            op = _new_rebalance(snap, now)
            writes[op.id] = op
            mine.append(op)
            events.append(Event("network", f"rebalance {op.id} opened: {op.log[-1]}"))
        taken = True

    in_flight = sum(1 for _, s in running if s.startswith((ROUTER + ":", NETWORK + ":")))
    budget = [max(0, settings.max_parallel - in_flight)]
    for op in sorted(mine, key=_urgency):
        new = _advance(op, snap, down, running, settings, budget, runs, events, halted)
        if new is not op:
            writes[new.id] = new
    anomalies = dict(previous_anomalies)
    if snap.routers is not None and any(r.ha_states for r in snap.routers):
        seen = {r.id for r in snap.routers if r.ha_states}
        found = dict(plan_policy.ha_anomalies(list(snap.routers), snap.agents))
        for rid in seen:
            was, now_is = previous_anomalies.get(rid), found.get(rid)
            if now_is and now_is != was:
                events.append(Event("network", f"HA router {rid}: {now_is}"))
            elif was and not now_is:
                events.append(Event("network", f"HA router {rid}: back to one active instance"))
            if now_is:
                anomalies[rid] = now_is
            else:
                anomalies.pop(rid, None)
    verdict = _verdict(watched, down, mine, writes, runs, halted, anomalies)
    return NetDecision(
        tuple(writes.values()), tuple(runs), tuple(events), verdict, anomalies, taken
    )


def _open_for_dead(  # noqa: PLR0917
    snap: NetSnapshot,
    ops: Sequence[Operation],
    watched: Sequence[AgentInfo],
    settings: NetSettings,
    fenced_at: Mapping[str, float],
    events: list[Event],
) -> list[Operation]:
    """A ``recover-agent`` operation for every dead agent not handled yet: an agent is handled
    once per death, by an operation opened after its last heartbeat."""
    handled: dict[str, float] = {}
    for op in ops:
        if op.kind == RECOVER_AGENT:
            handled[op.subject] = max(handled.get(op.subject, op.created), op.created)
    out = []
    for agent in sorted(watched, key=lambda a: a.id):
        if handled.get(agent.id, -1.0) >= (agent.heartbeat_at or 0.0):
            continue
        why = dead_reason(agent, snap, settings, fenced_at)
        if why is None:
            continue
        out.append(_new_op(agent, why, snap.now))
        events.append(Event(agent.host, f"{agent.kind} agent {agent.id} dead: {why}"))
    return out


def _urgency(op: Operation) -> tuple[int, float]:
    """The order in which operations get the move budget: routers carry traffic now, a DHCP
    agent is needed only when a lease renews or a VM boots, a rebalance can wait."""
    if op.kind == REBALANCE:
        return 2, op.created
    plan = op.step(PLAN)
    return (0 if plan is None or plan.params.get("agent_kind") == ROUTER else 1), op.created


def _halt(
    snap: NetSnapshot, watched: Sequence[AgentInfo], down: set[str], settings: NetSettings
) -> str | None:
    if snap.paused:
        return "paused by an operator"
    if snap.halted:
        return snap.halted
    if not snap.agents_ok:
        return "Neutron's agents unreadable"
    if len(down) >= 3 and len(down) > settings.max_dead_fraction * len(watched):
        onset = max((a.heartbeat_at or 0.0) + settings.stale_after for a in watched if a.id in down)
        if snap.cliff_ack is None or snap.cliff_ack < onset:
            return (
                f"halted: {len(down)}/{len(watched)} L3/DHCP agents down at once "
                "(a partition or a message-bus outage looks like this); `hastack ack-cliff` "
                "to proceed"
            )
    return None


def _new_op(agent: AgentInfo, why: str, now: float) -> Operation:
    kind = ROUTER if agent.kind == AgentKind.L3 else NETWORK
    plan = Step(
        PLAN, PLAN, {"agent_kind": kind, "host": agent.host, "agent": agent.id}, updated=now
    )
    return Operation(
        id=f"agent-{agent.kind}-{agent.host}-{int(now * 1000)}",
        kind=RECOVER_AGENT,
        subject=agent.id,
        created=now,
        updated=now,
        steps=[plan],
        log=[f"{now:.3f} opened: {why}"],
    )


def _new_rebalance(snap: NetSnapshot, now: float) -> Operation:
    assert snap.routers is not None
    plan = plan_policy.plan_rebalance(list(snap.routers), list(snap.agents.values()))
    hosts = {a.id: a.host for a in snap.agents.values()}
    steps = [Step(PLAN, PLAN, {"agent_kind": "rebalance"}, StepState.DONE, 0, plan.verdict, now)]
    steps += [_move_step(m, "legacy", hosts, now) for m in plan.moves]
    return Operation(
        id=f"rebalance-{int(now * 1000)}",
        kind=REBALANCE,
        subject="routers",
        created=now,
        updated=now,
        steps=steps,
        log=[f"{now:.3f} {plan.verdict}"],
    )


def _move_step(move: plan_policy.Move, mode: str, hosts: Mapping[str, str], now: float) -> Step:
    params: dict[str, Any] = {
        "name": move.name,
        "source": move.source,
        "target": move.target,
        "target_host": hosts.get(move.target or "", ""),
        "phase": "pending",
        "tried": [],
        "errors": 0,
        "reason": move.reason,
    }
    if move.kind == ROUTER:
        params.update(router=move.subject, mode=mode)
        return Step(f"{ROUTER}:{move.subject}", ROUTER, params, updated=now)
    params["network"] = move.subject
    return Step(f"{NETWORK}:{move.subject}", NETWORK, params, updated=now)


# ---------------------------------------------------------------- advancing one operation


def _advance(  # noqa: PLR0917
    op: Operation,
    snap: NetSnapshot,
    down: set[str],
    running: Collection[tuple[str, str]],
    settings: NetSettings,
    budget: list[int],
    runs: list[Run],
    events: list[Event],
    halted: str | None,
) -> Operation:
    w = OpEdit(op, snap.now)
    agent = snap.agents.get(op.subject) if op.kind == RECOVER_AGENT else None
    host = agent.host if agent else str((op.step(PLAN) or Step("", "")).params.get("host", ""))
    back = (  # beating again since the operation opened
        op.kind == RECOVER_AGENT
        and snap.agents_ok
        and agent is not None
        and agent.id not in down
        and (agent.heartbeat_at or 0.0) > op.created
    )
    plan = op.step(PLAN)
    if plan is not None and plan.state not in TERMINAL:
        if back:
            w.set(PLAN, state=StepState.SKIPPED, result="agent alive again: nothing to move")
            w.log("agent alive again before planning: nothing moved")
            w.finish(OpState.DONE)
            events.append(Event(host, f"agent {op.subject} alive again: nothing moved"))
            return w.op
        if not _make_plan(w, plan, snap, down, settings, events):
            return w.op
    for s in list(w.op.steps):
        if s.kind not in (ROUTER, NETWORK) or s.state in TERMINAL:
            continue
        if back and s.state == StepState.PENDING:
            w.set(s.id, state=StepState.SKIPPED, result="agent alive again: left where it was")
            continue
        _advance_step(w, s, snap, down, running, settings, budget, runs, events, halted)
    if all(s.state in TERMINAL for s in w.op.steps):
        moved = [s for s in w.op.steps if s.kind in (ROUTER, NETWORK)]
        done = sum(1 for s in moved if s.state == StepState.DONE)
        failed = [s for s in moved if s.state == StepState.FAILED]
        text = f"finished: {done}/{len(moved)} moved"
        if failed:
            text += (
                f", {len(failed)} failed ({failed[0].params.get('name', '')}: {failed[0].result})"
            )
        w.log(text)
        w.finish(OpState.FAILED if failed and not done else OpState.DONE)
        events.append(Event(host or "network", f"{op.id} {text}"))
    return w.op


def _make_plan(  # noqa: PLR0917
    w: OpEdit,
    plan: Step,
    snap: NetSnapshot,
    down: set[str],
    settings: NetSettings,
    events: list[Event],
) -> bool:
    """Turn the plan step into move steps; False while the routers or networks are unread."""
    kind = plan.params.get("agent_kind", ROUTER)
    agents = list(snap.agents.values())
    hosts = {a.id: a.host for a in agents}
    source = w.op.subject
    avoid = down - {source}
    if kind == ROUTER:
        if snap.routers is None:
            return False
        mine = [r for r in snap.routers if source in r.agents]
        result = plan_policy.plan_router_moves(mine, agents, {source}, avoid)
        modes = {r.id: _mode(r) for r in mine}
    else:
        if snap.networks is None:
            return False
        nets = [n for n in snap.networks if source in n.agents]
        result = plan_policy.plan_dhcp(
            nets, agents, {source}, settings.dhcp_agents_per_network, avoid
        )
        modes = {}
    steps: list[Step] = []
    counts: dict[str, int] = {}
    for m in result.moves:
        step = _move_step(m, modes.get(m.subject, ""), hosts, w.now)
        if m.kind == NETWORK:
            n = counts[m.subject] = counts.get(m.subject, 0) + 1
            step.id = f"{NETWORK}:{m.subject}:{n}"
        steps.append(step)
    for stuck in result.stuck:
        params: dict[str, Any] = {
            "name": stuck.name,
            "source": source,
            "target": None,
            "target_host": "",
            "phase": "unplaced",
            "tried": [],
            "errors": 0,
        }
        if stuck.kind == ROUTER:
            r = next(r for r in snap.routers or () if r.id == stuck.subject)
            params.update(router=stuck.subject, mode=_mode(r))
            sid = f"{ROUTER}:{stuck.subject}"
        else:
            params["network"] = stuck.subject
            sid = f"{NETWORK}:{stuck.subject}:unplaced"
        if any(s.id == sid for s in steps):
            continue
        steps.append(Step(sid, stuck.kind, params, StepState.PENDING, 0, stuck.reason, w.now))
    w.add_steps(steps)
    w.set(PLAN, state=StepState.DONE, result=result.verdict)
    w.log(f"plan: {result.verdict}")
    events.append(Event(str(plan.params.get("host", "network")), f"plan: {result.verdict}"))
    return True


def _mode(router: RouterInfo) -> str:
    if router.ha:
        return "ha"
    if router.distributed:
        return "snat"
    return "legacy"


def _advance_step(  # noqa: PLR0917
    w: OpEdit,
    s: Step,
    snap: NetSnapshot,
    down: set[str],
    running: Collection[tuple[str, str]],
    settings: NetSettings,
    budget: list[int],
    runs: list[Run],
    events: list[Event],
    halted: str | None,
) -> None:
    if (w.op.id, s.id) in running:
        return
    phase = s.params.get("phase")
    if s.state == StepState.RUNNING and phase == "verifying":
        _verify(w, s, snap, settings, events)
        return
    if s.state == StepState.RUNNING:  # journaled running, no worker: resumed after a crash
        if halted is None:
            runs.append(_run(w.op, s))
        return
    if phase in ("retarget", "unplaced") and not _retarget(w, s, snap, down):
        return
    s = w.op.step(s.id) or s
    if halted is not None or budget[0] <= 0:
        return
    proof = None
    if s.kind == ROUTER and s.params.get("mode") in ("legacy", "snat") and w.op.kind != REBALANCE:
        # the proof is about the dead agent's node, whatever binding a retry now removes
        source = snap.agents.get(w.op.subject)
        proof = move_proof(source, snap, settings)
        if proof is None:
            where = source.host if source else "its node"
            why = f"waiting: {where} is not proven off (fence it, or confirm it off)"
            if s.result != why:
                w.set(s.id, result=why)
                events.append(Event(where, f"{s.params.get('name')}: {why}"))
            return
    if proof is not None and s.params.get("proof") != proof:
        s = w.set(s.id, params={"proof": proof})
    budget[0] -= 1
    runs.append(_run(w.op, s))


def _run(op: Operation, s: Step) -> Run:
    args = {
        "source": s.params.get("source"),
        "target": s.params.get("target"),
        "mode": s.params.get("mode", ""),
        "proof": s.params.get("proof"),
        "rebalance": op.kind == REBALANCE,
    }
    if s.kind == ROUTER:
        return Run(op.id, s.id, MOVE_ROUTER, {**args, "router": s.params["router"]})
    return Run(op.id, s.id, MOVE_NETWORK, {**args, "network": s.params["network"]})


def _verify(
    w: OpEdit, s: Step, snap: NetSnapshot, settings: NetSettings, events: list[Event]
) -> None:
    rid = s.params["router"]
    name = s.params.get("name") or rid
    host = str(s.params.get("target_host", ""))
    ok, why = False, "not verified yet"
    if s.params.get("mode") == "ha":
        router = next((r for r in snap.routers or () if r.id == rid), None)
        if snap.routers is not None and router is None:
            ok, why = True, "router deleted"
        elif router is not None and router.ha_states:
            state = router.ha_states.get(str(s.params.get("target")))
            ok = state in HA_SETTLED
            why = f"new binding {state or 'absent'} on {host}"
    else:
        health = snap.health.get(rid)
        if health is not None:
            ok, why = _healthy(health, host, s.params.get("mode") == "snat")
        elif snap.routers is not None and all(r.id != rid for r in snap.routers):
            ok, why = True, "router deleted"
    if ok:
        w.set(s.id, state=StepState.DONE, result=f"verified: {why}", params={"phase": "done"})
        return
    issued = float(s.params.get("issued_at", w.now))
    if w.now - issued <= settings.verify_timeout:
        if s.result != why:
            w.set(s.id, result=why)
        return
    _retry_or_fail(
        w, s, f"not verified within {settings.verify_timeout:g}s ({why})", settings, events
    )
    events.append(Event(host, f"{name}: not verified on {host} in time"))


def _healthy(health: RouterHealth, host: str, snat: bool) -> tuple[bool, str]:
    wanted = (ROUTER_SNAT, ROUTER_GATEWAY) if snat else (ROUTER_INTERFACE, ROUTER_GATEWAY)
    ports = [p for p in health.ports if p.owner in wanted]
    bad = [p for p in ports if p.status != "ACTIVE" or p.host != host]
    fips_down = [f for f, status in health.floating_ips if status != "ACTIVE"]
    if bad:
        p = bad[0]
        return (
            False,
            f"{len(bad)}/{len(ports)} port(s) not ACTIVE on {host} ({p.status} on {p.host or '-'})",
        )
    if fips_down:
        return False, f"{len(fips_down)} floating IP(s) not ACTIVE"
    return (
        True,
        f"{len(ports)} port(s) ACTIVE on {host}, {len(health.floating_ips)} floating IP(s) ACTIVE",
    )


def _retry_or_fail(
    w: OpEdit, s: Step, why: str, settings: NetSettings, events: list[Event]
) -> None:
    attempts = s.attempts + 1
    name = s.params.get("name") or s.id
    if attempts > settings.retries:
        w.set(
            s.id, state=StepState.FAILED, attempts=attempts, result=why, params={"phase": "failed"}
        )
        events.append(Event("network", f"{name}: failed after {attempts} attempt(s): {why}"))
        return
    tried = [*s.params.get("tried", []), s.params.get("target")]
    w.set(
        s.id,
        state=StepState.PENDING,
        attempts=attempts,
        result=f"attempt {attempts} failed: {why}; retrying on another agent",
        params={"phase": "retarget", "tried": [t for t in tried if t]},
    )


def _retarget(w: OpEdit, s: Step, snap: NetSnapshot, down: set[str]) -> bool:
    """A new target away from the tried ones; the router's current binding (a failed target)
    becomes the source to remove.  False while the routers are unread or nothing fits."""
    agents = list(snap.agents.values())
    hosts = {a.id: a.host for a in agents}
    tried = set(s.params.get("tried", []))
    if s.kind == ROUTER:
        if snap.routers is None:
            return False
        router = next((r for r in snap.routers if r.id == s.params["router"]), None)
        if router is None:
            w.set(s.id, state=StepState.DONE, result="router deleted", params={"phase": "done"})
            return False
        source = str(s.params.get("source") or "")
        elsewhere = [
            a
            for a in router.agents
            if a != source and a not in tried and a in snap.agents and a not in down
        ]
        if router.legacy and elsewhere:  # someone else re-homed it (Neutron's own failover?)
            w.set(
                s.id,
                state=StepState.RUNNING,
                params={
                    "phase": "verifying",
                    "target": elsewhere[0],
                    "target_host": hosts.get(elsewhere[0], ""),
                    "issued_at": w.now,
                },
                result=f"already hosted by {elsewhere[0]}: verifying",
            )
            return False
        bound = [a for a in router.agents if a in tried or a == source]
        # Unbound (the removal went through, the add did not): place it as if still on the
        # agent it came off; removing it there again is a no-op.
        remove = bound[0] if bound else (source or None)
        pretend = dataclasses.replace(router, agents=(remove,) if remove else ())
        dead = {remove} if remove else set()
        plan = plan_policy.plan_router_moves([pretend], agents, dead, down | tried)
        if not plan.moves:
            why = plan.stuck[0].reason if plan.stuck else "no target"
            if s.result != why:
                w.set(s.id, result=why, params={"phase": "unplaced"})
            return False
        m = plan.moves[0]
        w.set(
            s.id,
            params={
                "phase": "pending",
                "source": remove,
                "target": m.target,
                "target_host": hosts.get(m.target or "", ""),
            },
            result=f"retargeted: {m.reason}",
        )
        return True
    if snap.networks is None:
        return False
    net = next((n for n in snap.networks if n.id == s.params["network"]), None)
    if net is None:
        w.set(s.id, state=StepState.DONE, result="network deleted", params={"phase": "done"})
        return False
    pool = [
        a
        for a in agents
        if a.kind == AgentKind.DHCP
        and a.usable
        and a.id not in down
        and a.id not in tried
        and a.id not in net.agents
    ]
    if not pool:
        if s.result != "no usable DHCP agent left":
            w.set(s.id, result="no usable DHCP agent left", params={"phase": "unplaced"})
        return False
    best = min(pool, key=lambda a: (a.id not in tried, a.id))
    w.set(
        s.id,
        params={"phase": "pending", "target": best.id, "target_host": best.host},
        result=f"retargeted to {best.host}",
    )
    return True


# ---------------------------------------------------------------- journal around runs


def mark_running(op: Operation, run: Run, now: float) -> Operation:
    w = OpEdit(op, now)
    w.set(run.step, state=StepState.RUNNING, params={"phase": "moving"})
    return w.op


def apply_outcome(op: Operation, outcome: Outcome, settings: NetSettings, now: float) -> Operation:
    w = OpEdit(op, now)
    step = op.step(outcome.run.step)
    if step is None:
        return op
    name = step.params.get("name") or step.id
    if outcome.ok and step.kind == ROUTER:
        w.set(step.id, params={"phase": "verifying", "issued_at": now}, result=outcome.detail)
    elif outcome.ok:
        w.set(step.id, state=StepState.DONE, params={"phase": "done"}, result=outcome.detail)
    elif outcome.transient and int(step.params.get("errors", 0)) < settings.action_errors:
        errors = int(step.params.get("errors", 0)) + 1
        w.set(
            step.id,
            state=StepState.PENDING,
            result=f"transient error {errors}: {outcome.detail}",
            params={"phase": "pending", "errors": errors},
        )
    else:
        _retry_or_fail(w, step, outcome.detail, settings, [])
        w.log(f"{name}: {outcome.detail}")
    return w.op


# ---------------------------------------------------------------- verdict


def _verdict(  # noqa: PLR0917
    watched: Sequence[AgentInfo],
    down: set[str],
    ops: Sequence[Operation],
    writes: Mapping[str, Operation],
    runs: Sequence[Run],
    halted: str | None,
    anomalies: Mapping[str, str],
) -> str:
    if not watched:
        return "network: no L3/DHCP agents"
    current = [writes.get(op.id, op) for op in ops]
    open_ops = [op for op in current if op.state == OpState.OPEN]
    up = sum(1 for a in watched if a.id not in down)
    text = f"network: {up}/{len(watched)} L3/DHCP agents up"
    if open_ops:
        steps = [s for op in open_ops for s in op.steps if s.kind in (ROUTER, NETWORK)]
        left = [s for s in steps if s.state not in TERMINAL]
        verifying = sum(1 for s in left if s.params.get("phase") == "verifying")
        waiting = sum(1 for s in left if str(s.result).startswith("waiting"))
        text += f"; {len(open_ops)} operation(s), {len(left)} move(s) open"
        if verifying:
            text += f" ({verifying} verifying)"
        if waiting:
            text += f"; {waiting} waiting for a fence proof"
    if runs:
        text += f"; running {len(runs)} move(s)"
    if anomalies:
        rid, why = next(iter(sorted(anomalies.items())))
        text += f"; {len(anomalies)} HA router anomaly(ies) ({rid}: {why})"
    if halted:
        text += f"; {halted}"
    return text
