"""The fencing plan: which device to try next, when a host is proven off, when to give up.

Topology: a host has ordered *levels*; each level is a list of devices that must *all* confirm
power off (two PDUs feeding one server are one level of two devices).  Levels are tried in
order; a level fails when one of its devices has used up its attempts without confirming; then
the next level is tried.  When every level has failed the host is ``fence_failed``: nothing is
evacuated and an operator is asked.  An operator's confirmation is a proof at any time.

Pure: attempts and the time come from the caller.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

from hastack.domain.fencing import WATCHDOG_DEVICE, FenceAttempt, FenceProof, ProofKind


class StepKind(enum.StrEnum):
    TRY = "try"  # run power-off on these devices
    PROVEN = "proven"  # the host is proven off
    FAILED = "failed"  # every level failed: fence_failed


@dataclasses.dataclass(frozen=True)
class FencingStep:
    kind: StepKind
    reason: str
    level: int = -1
    devices: tuple[str, ...] = ()
    proof: FenceProof | None = None


@dataclasses.dataclass(frozen=True)
class OperatorConfirmation:
    operator: str
    at: float
    comment: str = ""


def next_step(
    host: str,
    levels: Sequence[Sequence[str]],
    attempts: Sequence[FenceAttempt],
    *,
    attempts_per_device: int = 2,
    confirmation: OperatorConfirmation | None = None,
) -> FencingStep:
    """Decide the next fencing step for ``host`` from everything tried so far."""
    if confirmation is not None:
        proof = FenceProof(
            host, ProofKind.OPERATOR, confirmation.operator, confirmation.at, confirmation.comment
        )
        return FencingStep(
            StepKind.PROVEN,
            f"{host} confirmed off by operator {confirmation.operator}",
            proof=proof,
        )
    if not levels or not any(levels):
        return FencingStep(
            StepKind.FAILED,
            f"{host} has no fence device configured; waiting for an operator to confirm it is off",
        )
    failures: list[str] = []
    for number, devices in enumerate(levels):
        if not devices:
            continue
        mine = [a for a in attempts if a.level == number]
        confirmed = {a.device: a for a in mine if a.ok}
        if all(d in confirmed for d in devices):
            last = max(confirmed[d].at for d in devices)
            names = ", ".join(devices)
            kind = ProofKind.POWER_OFF
            if all(d.startswith(WATCHDOG_DEVICE) for d in devices):
                kind = ProofKind.WATCHDOG  # configured alone on the last level (config.py)
            proof = FenceProof(host, kind, names, last, f"level {number + 1}")
            return FencingStep(
                StepKind.PROVEN,
                f"{host} power off confirmed by {names} (level {number + 1})",
                level=number,
                devices=tuple(devices),
                proof=proof,
            )
        exhausted = [
            d
            for d in devices
            if d not in confirmed
            and sum(1 for a in mine if a.device == d and not a.ok) >= attempts_per_device
        ]
        if exhausted:
            why = "; ".join(_last_reason(mine, d) for d in exhausted)
            failures.append(f"level {number + 1}: {why}")
            continue
        pending = tuple(d for d in devices if d not in confirmed)
        tried = len([a for a in mine if not a.ok])
        reason = f"{host}: fencing with {', '.join(pending)} (level {number + 1}"
        reason += f", retry {tried})" if tried else ")"
        if failures:
            reason += " after " + " | ".join(failures)
        return FencingStep(StepKind.TRY, reason, level=number, devices=pending)
    return FencingStep(
        StepKind.FAILED, f"{host} fence_failed: every level failed: " + " | ".join(failures)
    )


def _last_reason(attempts: Sequence[FenceAttempt], device: str) -> str:
    mine = [a for a in attempts if a.device == device and not a.ok]
    return f"{device}: {mine[-1].reason}" if mine else f"{device}: no attempt"
