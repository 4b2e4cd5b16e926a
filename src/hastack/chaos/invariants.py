"""The invariants a campaign run must keep, checked after every tick and at the end.

1. No instance ever runs on two hosts (the simulator's physical truth, isolated hosts
   included), and no legacy router forwards from two hosts.
2. No evacuation without a fence proof for its source in the journal.
3. No operation lost or run twice across leader changes: an operation once in the journal
   stays there; a host never has two open recoveries; no instance is evacuated more times
   than the journal tried it.
4. At the end, every instance left on a host that is down (power off, hung or cut off) has a
   verdict that says why it was not moved: fencing failed, the guards refused or halted, it
   could not be placed, maintenance.  Silence is a violation.
5. No fencing beyond the budget; no side effect during an operator's pause; no side effect
   by a controller that does not hold the lease under the epoch it believes it holds.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from hastack.domain.hosts import HostState
from hastack.engine.engine import LEADER
from hastack.engine.journal import Journal, Operation, OpState, StepState
from hastack.errors import StoreUnavailable
from hastack.policy import recovery
from hastack.sim.bmc.backend import BmcCondition
from hastack.sim.truth import split_brains

if TYPE_CHECKING:
    from hastack.chaos.run import Action, Run

# Why an instance may stay on a dead host: the host's state, or words its verdict holds.
EXPLAINED_STATES = (HostState.FENCE_FAILED, HostState.MAINTENANCE)
EXPLAINED = ("refused", "halted", "paused")


class Violation(AssertionError):
    pass


class Checker:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.checks = 0
        self.seen_ops: set[str] = set()
        self.evacuations: collections.Counter[str] = collections.Counter()
        self.found: list[str] = []

    def _journal(self) -> list[Operation]:
        return [op for op, _ in Journal(self.run.store).operations()]

    def _violate(self, what: str) -> None:
        tail = "\n".join(self.run.history[-60:])
        raise Violation(f"{what}\n--- history (last 60 lines) ---\n{tail}")

    def _later(self, what: str) -> None:
        """A violation seen inside a controller's call: raised after its tick (raised there,
        the engine's catch-all would log it and carry on)."""
        self.found.append(what)

    # ------------------------------------------------------------ as it happens

    def on_world(self, kind: str, fields: dict[str, Any]) -> None:
        if kind != "evacuate":
            return
        self.checks += 1
        instance, source = str(fields.get("id")), str(fields.get("source"))
        self.evacuations[instance] += 1
        proven = any(
            op.subject == source and recovery.proof_of(op) is not None for op in self._journal()
        )
        if not proven:
            self._later(f"invariant 2: {instance} evacuated from {source} without a fence proof")

    def on_action(self, action: Action) -> None:
        """Before every side effect: the controller holds the lease it believes it holds,
        and no operator pause is in force."""
        self.checks += 2
        lease = self.run.store.current(LEADER)  # the truth, not through any fault
        if (
            action.epoch is None
            or lease is None
            or lease.holder != action.controller
            or lease.epoch != action.epoch
            or lease.expires_at <= self.run.clock.now()
        ):
            held = f"{lease.holder} epoch {lease.epoch}" if lease else "nobody"
            self._later(
                f"invariant 5: {action.controller} (epoch {action.epoch}) did {action.kind} "
                f"{action.target} while {held} held the lease"
            )
        if action.kind == "remove_router":
            self._router_move(action)
        for start, end in self.run.pauses:
            # the tick that reads the pause is the first bound by it
            if start + 1.0 <= action.at < end:
                self._later(
                    f"invariant 5: {action.controller} did {action.kind} {action.target} at "
                    f"{action.at:.0f}s during an operator pause ({start:.0f}-{end:.0f}s)"
                )

    def _router_move(self, action: Action) -> None:
        """Invariant 2 for routers: a legacy router (or a DVR router's SNAT part) leaves a
        node only once the node is proven off: its recovery holds a fence proof, or its BMC
        (answering, not lying) reads power off, as hastack's network HA counts it."""
        self.checks += 1
        agent_id, _, router_id = action.target.partition(" ")
        world = self.run.world
        with world.lock:
            neutron = world.neutron
            agent, router = neutron.agents.get(agent_id), neutron.routers.get(router_id)
            if agent is None or router is None or router.ha:
                return
            host = world.hosts.get(agent.host)
            reads_off = (
                host is not None
                and not host.power_on
                and host.bmc_condition == BmcCondition.OK
                and host.name not in self.run.lying
            )
        proven = reads_off or any(
            op.subject == agent.host and recovery.proof_of(op) is not None for op in self._journal()
        )
        if not proven:
            self._later(
                f"invariant 2: router {router_id} moved off {agent.host} without a fence proof"
            )

    def after_tick(self) -> None:
        if self.found:
            self._violate(self.found[0])
        self.checks += 1
        doubles, doubled = split_brains(self.run.world)
        if doubles:
            self._violate(f"invariant 1: instances running on two hosts: {doubles}")
        if doubled:
            self._violate(f"invariant 1: routers forwarding from two hosts: {doubled}")
        self.checks += 2
        ops = self._journal()
        ids = {op.id for op in ops}
        lost = self.seen_ops - ids
        if lost:
            self._violate(f"invariant 3: operations lost from the journal: {sorted(lost)}")
        self.seen_ops |= ids
        open_hosts = collections.Counter(
            op.subject for op in ops if op.kind == recovery.RECOVER and op.state == OpState.OPEN
        )
        twice = [h for h, n in open_hosts.items() if n > 1]
        if twice:
            self._violate(f"invariant 3: two open recoveries of {twice}")
        self.checks += 1
        self._budget(ops)

    def _budget(self, ops: list[Operation]) -> None:
        budget = self.run.settings.guards.budgets[0]
        limit = budget.limit(len(self.run.world.hosts))
        starts = sorted(op.created for op in ops if op.kind == recovery.RECOVER)
        for i, at in enumerate(starts):
            inside = [t for t in starts[: i + 1] if at - t < budget.window]
            if len(inside) > limit:
                self._violate(
                    f"invariant 5: {len(inside)} fences within {budget.window:g}s, budget {limit}"
                )

    # ------------------------------------------------------------ at the end

    def settled(self) -> bool:
        """Nothing left to happen: no open operation, no host between states."""
        leader = self.run.leader()
        if leader is None:
            return False
        moving = (HostState.SUSPECT, HostState.FAILED, HostState.FENCING, HostState.RECOVERING)
        if any(r.state in moving for r in leader.engine.records.values()):
            return False
        try:
            return not any(op.state == OpState.OPEN for op in self._journal())
        except StoreUnavailable:
            return False

    def at_end(self) -> None:
        self.checks += 1
        ops = self._journal()
        tried: collections.Counter[str] = collections.Counter()
        for op in ops:
            for s in op.steps:
                # a step issues at most once per failed attempt, plus its current one
                if s.kind == recovery.EVACUATE and not s.params.get("skip"):
                    tried[str(s.params.get("instance"))] += s.attempts + 1
        over = {i: (n, tried[i]) for i, n in self.evacuations.items() if n > tried[i]}
        if over:
            self._violate(f"invariant 3: evacuated more often than the journal tried: {over}")
        self._stranded(ops)

    def _stranded(self, ops: list[Operation]) -> None:
        world = self.run.world
        with world.lock:
            down = {
                h.name
                for h in world.hosts.values()
                if h.name.startswith("compute") and (not h.power_on or h.hung or h.isolated)
            }
            left = [(i.name, i.id, i.host) for i in world.instances.values() if i.host in down]
        leader = self.run.leader()
        records = leader.engine.records if leader else {}
        verdict = leader.engine.last_verdict if leader else ""
        for name, iid, host in left:
            self.checks += 1
            record = records.get(str(host))
            said = f"{record.state.value}: {record.reason}" if record else "no record"
            # a failed or skipped step for it carries its own reason (unplaceable, retries out)
            stepped = any(
                s.result
                for op in ops
                if op.subject == host
                for s in op.steps
                if s.params.get("instance") == iid
                and s.state in (StepState.FAILED, StepState.SKIPPED)
            )
            # fencing that keeps failing is retried every fence_retry_after: between two
            # attempts the host reads "fencing", its log says every level failed
            unfenced = any(
                op.subject == host
                and op.state == OpState.OPEN
                and recovery.proof_of(op) is None
                and any("every level failed" in line for line in op.log)
                for op in ops
            )
            explained = (
                stepped
                or unfenced
                or (record is not None and record.state in EXPLAINED_STATES)
                or any(word in f"{said} {verdict}".lower() for word in EXPLAINED)
            )
            if not explained:
                self._violate(
                    f"invariant 4: {name} is still on {host}, which is down, and no verdict says "
                    f"why (host {said}; cluster: {verdict})"
                )
