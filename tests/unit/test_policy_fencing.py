"""The fencing plan: levels in order, all devices of a level, escalation, fence_failed, and
the one invariant that matters: no proof without a confirmed power-off or an operator."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.domain.fencing import FenceAttempt, ProofKind
from hastack.policy.fencing import OperatorConfirmation, StepKind, next_step

LEVELS = [["ipmi"], ["redfish"], ["pdu-a", "pdu-b"]]


def attempt(level: int, device: str, ok: bool, at: float = 1.0, reason: str = "") -> FenceAttempt:
    return FenceAttempt(
        level, device, ok, reason or ("power off confirmed" if ok else "timeout"), at
    )


def test_first_level_first() -> None:
    step = next_step("c1", LEVELS, [])
    assert (step.kind, step.level, step.devices) == (StepKind.TRY, 0, ("ipmi",))


def test_proven_by_first_level() -> None:
    step = next_step("c1", LEVELS, [attempt(0, "ipmi", True, at=7.0)])
    assert step.kind == StepKind.PROVEN and step.proof is not None
    assert (step.proof.kind, step.proof.by, step.proof.confirmed_at) == (
        ProofKind.POWER_OFF,
        "ipmi",
        7.0,
    )


def test_retry_then_escalate_with_reasons() -> None:
    one = next_step("c1", LEVELS, [attempt(0, "ipmi", False, reason="BMC busy")])
    assert (one.kind, one.level) == (StepKind.TRY, 0) and "retry 1" in one.reason
    two = next_step("c1", LEVELS, [attempt(0, "ipmi", False, reason="BMC busy")] * 2)
    assert (two.kind, two.level, two.devices) == (StepKind.TRY, 1, ("redfish",))
    assert "after level 1: ipmi: BMC busy" in two.reason


def test_a_level_needs_every_device() -> None:
    tried = [attempt(0, "ipmi", False)] * 2 + [attempt(1, "redfish", False)] * 2
    tried.append(attempt(2, "pdu-a", True))
    step = next_step("c1", LEVELS, tried)
    assert (step.kind, step.level, step.devices) == (StepKind.TRY, 2, ("pdu-b",))
    tried.append(attempt(2, "pdu-b", True, at=9.0))
    step = next_step("c1", LEVELS, tried)
    assert step.kind == StepKind.PROVEN and step.proof and step.proof.by == "pdu-a, pdu-b"


def test_every_level_failed_is_fence_failed() -> None:
    tried = [attempt(n, d, False, reason="no answer") for n, lv in enumerate(LEVELS) for d in lv]
    step = next_step("c1", LEVELS, tried * 2)
    assert step.kind == StepKind.FAILED and step.proof is None
    assert "fence_failed" in step.reason and "level 3" in step.reason


def test_no_devices_waits_for_operator_and_operator_proves() -> None:
    assert next_step("c1", [], []).kind == StepKind.FAILED
    step = next_step("c1", [], [], confirmation=OperatorConfirmation("alice", 5.0, "pulled plug"))
    assert step.kind == StepKind.PROVEN and step.proof is not None
    assert (step.proof.kind, step.proof.by) == (ProofKind.OPERATOR, "alice")


devices = st.sampled_from(["ipmi", "redfish", "pdu-a", "pdu-b", "other"])
attempts_st = st.lists(
    st.builds(attempt, st.integers(0, 3), devices, st.booleans(), st.floats(0, 100)), max_size=20
)


@settings(max_examples=400, deadline=None)
@given(attempts_st)
def test_no_proof_without_every_device_of_a_level_confirming(tried) -> None:
    step = next_step("c1", LEVELS, tried)
    if step.kind == StepKind.PROVEN:
        assert step.proof is not None and step.proof.kind == ProofKind.POWER_OFF
        level = LEVELS[step.level]
        for device in level:
            assert any(a.ok and a.level == step.level and a.device == device for a in tried)
    else:
        assert step.proof is None
