"""Fence proofs: the only thing that lets hastack move a workload off a host.

An evacuation or a router move can only be built from a :class:`FenceProof`: the BMC (every
device of one fence level) confirmed the power off by reading it back, or an operator confirmed
it, audited.
"""

from __future__ import annotations

import dataclasses
import enum


class ProofKind(enum.StrEnum):
    POWER_OFF = "power-off-confirmed"  # every device of a fence level read back "off"
    OPERATOR = "operator-confirmed"  # an operator confirmed the host is off (audited)
    WATCHDOG = "watchdog-self-fenced"  # its agent's lease expired and its watchdog period passed


WATCHDOG_DEVICE = "watchdog:"  # the name of a watchdog "device" is this and the host's name


@dataclasses.dataclass(frozen=True)
class FenceProof:
    host: str
    kind: ProofKind
    by: str  # the devices (display names, no secrets) or the operator's identity
    confirmed_at: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class FenceAttempt:
    """One power-off attempt on one device, as the engine recorded it."""

    level: int
    device: str
    ok: bool  # the device confirmed "off" by a status read-back
    reason: str
    at: float
