"""A compute host as hastack sees it: what was observed, and what hastack has concluded.

Observations are facts with a time; a :class:`HostRecord` is hastack's memory of one host,
carried from tick to tick (and journaled), so that "lost for N seconds" can be decided without
a clock: every decision receives ``now`` from its caller.
"""

from __future__ import annotations

import dataclasses
import enum


class HostState(enum.StrEnum):
    """The host lifecycle (docs/architecture.md, safety model)."""

    OK = "ok"
    SUSPECT = "suspect"  # one signal lost
    FAILED = "failed"  # two independent signals lost for the configured time
    FENCING = "fencing"
    FENCED = "fenced"  # proven off
    FENCE_FAILED = "fence_failed"  # every fence level failed: a human or the next attempt
    RECOVERING = "recovering"
    RECOVERED = "recovered"
    MAINTENANCE = "maintenance"  # operator: hastack observes but never acts


class Signal(enum.StrEnum):
    """Independent witnesses of a host's health."""

    NOVA = "nova"  # nova-compute service heartbeat (updated_at) and state
    NEUTRON = "neutron"  # Neutron agents' heartbeats, on hosts without nova-compute
    BMC = "bmc"  # the BMC's power reading: off is a loss, on says nothing about the OS
    PROBE = "probe"  # TCP reachability from the controller
    AGENT = "agent"  # hastack's node agent heartbeat, where one runs


@dataclasses.dataclass(frozen=True)
class Reading:
    """One signal's verdict at ``at``: ``lost`` True (the signal says the host is gone), False
    (it says the host is there), or None (no data: the source did not answer or is not used)."""

    signal: Signal
    lost: bool | None
    at: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class HostObservation:
    host: str
    readings: tuple[Reading, ...]

    def reading(self, signal: Signal) -> Reading | None:
        for r in self.readings:
            if r.signal == signal:
                return r
        return None


@dataclasses.dataclass(frozen=True)
class HostRecord:
    """hastack's memory of a host. ``lost_since`` holds, per signal, when its current unbroken
    run of "lost" readings began."""

    host: str
    state: HostState = HostState.OK
    since: float = 0.0  # when ``state`` was entered
    reason: str = ""  # why: the verdict that moved it here
    lost_since: tuple[tuple[Signal, float], ...] = ()

    def lost_map(self) -> dict[Signal, float]:
        return dict(self.lost_since)
