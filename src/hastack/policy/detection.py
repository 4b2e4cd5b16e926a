"""Failure detection: from signal readings to ``ok``, ``suspect`` or ``failed``, with a reason.

The rule (the safety model's "two witnesses"): one lost signal makes a host ``suspect``; it is
``failed`` only when at least two *independent* signals have each been lost, without a break,
for ``profile.confirm_after`` seconds.  A reading with no data (``lost is None``) neither starts
nor breaks a run.  A nova-compute crash therefore stays ``suspect`` (the probe and the agent still
see the host), and a host whose heartbeats flap never reaches ``failed``.

Everything here is pure: no I/O, no clock, no exceptions on odd input.
"""

from __future__ import annotations

import dataclasses

from hastack.domain.hosts import HostObservation, HostRecord, HostState, Reading, Signal

DETECTION_STATES = (HostState.OK, HostState.SUSPECT, HostState.FAILED)


@dataclasses.dataclass(frozen=True)
class DetectionProfile:
    """Timing of detection.  The false-positive risk each profile takes is documented in
    docs/instance-ha.md; both still need two independent witnesses."""

    name: str
    nova_stale_after: float  # a heartbeat older than this is lost (report_interval 10 s in Nova)
    probe_failures: int  # consecutive failed TCP probes before the probe signal is lost
    agent_stale_after: float  # node agent heartbeat older than this is lost
    confirm_after: float  # how long two signals must both stay lost
    probe_interval: float  # how often the engine probes (used by the engine, stated here)
    bmc_interval: float  # how often the engine reads BMC power
    nova_interval: float = 2.0  # how often the engine lists Nova's services


PROFILES = {
    "default": DetectionProfile(
        name="default",
        nova_stale_after=25.0,
        probe_failures=3,
        agent_stale_after=6.0,
        confirm_after=5.0,
        probe_interval=2.0,
        bmc_interval=3.0,
    ),
    "fast": DetectionProfile(
        name="fast",
        nova_stale_after=15.0,
        probe_failures=2,
        agent_stale_after=2.0,
        confirm_after=1.0,
        probe_interval=0.5,
        bmc_interval=1.0,
        nova_interval=1.0,
    ),
}


# ---------------------------------------------------------------- raw data -> readings


def nova_reading(
    updated_at: float | None, state_up: bool | None, now: float, profile: DetectionProfile
) -> Reading:
    """Nova's heartbeat: lost when ``updated_at`` is older than ``nova_stale_after`` (without
    waiting for Nova's own service_down_time) or Nova already reports the service down."""
    if updated_at is None and state_up is None:
        return Reading(Signal.NOVA, None, now, "no data from Nova")
    if updated_at is not None:
        age = now - updated_at
        if age > profile.nova_stale_after:
            return Reading(Signal.NOVA, True, now, f"heartbeat {age:.0f}s old")
    if state_up is False:
        return Reading(Signal.NOVA, True, now, "Nova reports the service down")
    return Reading(Signal.NOVA, False, now, "heartbeat fresh")


def bmc_reading(power: str | None, now: float) -> Reading:
    """The BMC's power reading: ``off`` is a loss; ``on`` says the machine has power, which is
    not a loss (a hung kernel has power too); no answer is no data."""
    if power == "off":
        return Reading(Signal.BMC, True, now, "BMC reports power off")
    if power == "on":
        return Reading(Signal.BMC, False, now, "BMC reports power on")
    return Reading(Signal.BMC, None, now, "BMC did not answer")


def probe_reading(
    consecutive_failures: int | None, now: float, profile: DetectionProfile
) -> Reading:
    if consecutive_failures is None:
        return Reading(Signal.PROBE, None, now, "not probed")
    if consecutive_failures >= profile.probe_failures:
        return Reading(Signal.PROBE, True, now, f"{consecutive_failures} probes failed")
    return Reading(Signal.PROBE, False, now, "reachable")


def agent_reading(last_seen: float | None, now: float, profile: DetectionProfile) -> Reading:
    if last_seen is None:
        return Reading(Signal.AGENT, None, now, "no agent")
    age = now - last_seen
    if age > profile.agent_stale_after:
        return Reading(Signal.AGENT, True, now, f"agent silent {age:.0f}s")
    return Reading(Signal.AGENT, False, now, "agent heartbeat fresh")


# ---------------------------------------------------------------- assessment


@dataclasses.dataclass(frozen=True)
class Assessment:
    record: HostRecord
    verdict: str
    changed: bool


def assess(
    record: HostRecord, observation: HostObservation, profile: DetectionProfile, now: float
) -> Assessment:
    """Fold one observation into the host's record.

    Only hosts in ``ok``, ``suspect`` or ``failed`` are assessed; past that (fencing onwards, or
    maintenance) the recovery owns the lifecycle and the record is returned unchanged.
    """
    if record.state not in DETECTION_STATES:
        return Assessment(record, f"{record.host}: {record.state}, not assessed", False)
    runs = record.lost_map()
    details: dict[Signal, str] = {}
    for reading in observation.readings:
        details[reading.signal] = reading.detail
        if reading.lost is True:
            runs.setdefault(reading.signal, reading.at)
        elif reading.lost is False:
            runs.pop(reading.signal, None)
    lost = sorted(runs, key=lambda s: (runs[s], s.value))
    confirmed = [s for s in lost if now - runs[s] >= profile.confirm_after]
    if not lost:
        state, reason = HostState.OK, "all signals healthy"
    elif len(confirmed) >= 2:
        state = HostState.FAILED
        reason = "failed: " + _describe(confirmed, runs, details, now)
    else:
        state = HostState.SUSPECT
        reason = "suspect: " + _describe(lost, runs, details, now)
        if len(lost) >= 2:
            reason += f" (confirming for {profile.confirm_after:g}s)"
    new = dataclasses.replace(
        record,
        state=state,
        since=record.since if state == record.state else now,
        reason=reason,
        lost_since=tuple(sorted(runs.items(), key=lambda kv: kv[0].value)),
    )
    changed = state != record.state
    return Assessment(new, f"{record.host} {reason}", changed)


def _describe(
    signals: list[Signal], runs: dict[Signal, float], details: dict[Signal, str], now: float
) -> str:
    parts = []
    for s in signals:
        extra = f", {details[s]}" if details.get(s) else ""
        parts.append(f"{s} lost {now - runs[s]:.1f}s{extra}")
    return "; ".join(parts)
