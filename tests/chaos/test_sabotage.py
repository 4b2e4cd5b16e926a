"""The campaign's checks can fail: each test breaks one safety mechanism of hastack on purpose
(mutation testing: ``monkeypatch`` replaces a piece of hastack's own code, never the simulator
or the checker) and shows the invariant that catches it, on a small fault history.  The same
history passes with hastack intact.  Then a failing history with noise in it is shrunk to the
events that matter."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hastack.chaos.campaign import invariant_of, shrink
from hastack.chaos.history import Event, Plan
from hastack.chaos.invariants import Violation
from hastack.chaos.run import Run, play
from hastack.domain.fencing import FenceProof, ProofKind
from hastack.engine.engine import Engine
from hastack.policy import fencing, guards, netrecovery, recovery
from hastack.policy.evacuation import EvacuationPlan

ISOLATED = Plan(seed=3, hosts=6, instances=18, controllers=1,
                events=(Event(5.0, "isolate", "compute02"),))  # fmt: skip
MASS = Plan(seed=5, hosts=8, instances=16, controllers=1,
            events=(Event(5.0, "mass", "", 0.0, 6),))  # fmt: skip
PAUSED = Plan(seed=6, hosts=6, instances=18, controllers=1,
              events=(Event(3.0, "operator-pause", "", 60.0),
                      Event(5.0, "power", "compute02")))  # fmt: skip
POWER = Plan(seed=7, hosts=6, instances=18, controllers=1,
             events=(Event(5.0, "power", "compute03"),))  # fmt: skip
NODE_CUT_OFF = Plan(seed=8, hosts=5, instances=10, network_nodes=2, routers=6, controllers=1,
                    events=(Event(4.0, "bmc-dead", "network01"),  # it cannot be fenced
                            Event(5.0, "net-isolate", "network01")))  # fmt: skip


def proven_at_once(host: str, *_: Any, **__: Any) -> fencing.FencingStep:
    """The sabotaged fencing policy: every host proven off at once, no device called."""
    proof = FenceProof(host, ProofKind.POWER_OFF, "nobody", 0.0, "sabotage")
    return fencing.FencingStep(fencing.StepKind.PROVEN, "sabotaged", proof=proof)


def _caught(plan: Plan, invariant: str) -> str:
    assert play(plan).violation is None, "the history must pass with hastack intact"
    return invariant


def test_fencing_skipped_runs_a_vm_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    _caught(ISOLATED, "invariant 1")

    monkeypatch.setattr(recovery.fence_policy, "next_step", proven_at_once)
    outcome = play(ISOLATED)
    assert invariant_of(outcome.violation) == "invariant 1", outcome.violation


def test_a_side_effect_without_the_lease_is_caught() -> None:
    # hastack guards its side effects twice (the journal's compare-and-set under the lease,
    # then the fencing token right before the call), so no single mutation makes it act
    # without the lease in virtual time; the checker is shown directly instead: a follower's
    # side effect, as the action log would carry it.
    run = Run(dataclasses.replace(POWER, controllers=2, events=()))
    try:
        for _ in range(3):
            run.step()
        leader = run.leader()
        assert leader is not None
        follower = next(s for s in run.slots if s is not leader)
        run.effect(follower.name, "evacuate", "vm-x", after=False)
        with pytest.raises(Violation, match=r"invariant 5: .* while .* held the lease"):
            run.checker.after_tick()
    finally:
        run.close()


def test_guards_removed_fence_beyond_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    _caught(MASS, "invariant 5")

    def allow_all(policy: Any, data: guards.GuardInput) -> guards.GuardDecision:
        return guards.GuardDecision(tuple(data.candidates), (), None)

    monkeypatch.setattr(recovery, "check", allow_all)
    outcome = play(MASS)
    assert invariant_of(outcome.violation) == "invariant 5", outcome.violation
    assert "budget" in (outcome.violation or "")


def test_an_ignored_operator_pause_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _caught(PAUSED, "invariant 5")
    real = Engine._control

    def never_paused(self: Engine, now: float) -> dict[str, Any]:
        return {**real(self, now), "paused": False}

    monkeypatch.setattr(Engine, "_control", never_paused)
    outcome = play(PAUSED)
    assert invariant_of(outcome.violation) == "invariant 5", outcome.violation
    assert "operator pause" in (outcome.violation or "")


def test_routers_moved_off_a_node_not_proven_off_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _caught(NODE_CUT_OFF, "invariant 2")
    monkeypatch.setattr(netrecovery, "move_proof", lambda *_: "sabotaged: no proof needed")
    outcome = play(NODE_CUT_OFF)
    assert invariant_of(outcome.violation) == "invariant 2", outcome.violation
    assert "moved off network01 without a fence proof" in (outcome.violation or "")


def test_instances_left_behind_without_a_verdict_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _caught(POWER, "invariant 4")

    def plans_nothing(*_: Any, **__: Any) -> EvacuationPlan:
        return EvacuationPlan((), (), (), (), (), "nothing to do")

    monkeypatch.setattr(recovery.evac_policy, "plan_evacuation", plans_nothing)
    outcome = play(POWER)
    assert invariant_of(outcome.violation) == "invariant 4", outcome.violation


def test_a_failing_history_shrinks_to_the_events_that_matter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recovery.fence_policy, "next_step", proven_at_once)
    noisy = dataclasses.replace(
        ISOLATED,
        events=(
            Event(2.0, "nova-5xx", "", 2.0),
            Event(5.0, "isolate", "compute02"),
            Event(20.0, "operator-pause", "", 5.0),
            Event(60.0, "bmc-busy", "compute05"),
        ),
    )
    small, outcome = shrink(noisy)
    assert [e.kind for e in small.events] == ["isolate"]
    assert invariant_of(outcome.violation) == "invariant 1"
