"""Detection: two independent witnesses, for the configured time, before a host is failed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.domain.hosts import HostObservation, HostRecord, HostState, Reading, Signal
from hastack.policy.detection import (
    PROFILES,
    assess,
    bmc_reading,
    nova_reading,
    probe_reading,
)

DEFAULT = PROFILES["default"]


def observe(now: float, **lost: bool | None) -> HostObservation:
    return HostObservation(
        "compute01", tuple(Reading(Signal(k), v, now, "") for k, v in lost.items())
    )


def run(ticks: list[tuple[float, dict[str, bool | None]]]) -> list[HostRecord]:
    record = HostRecord("compute01")
    out = []
    for now, lost in ticks:
        record = assess(record, observe(now, **lost), DEFAULT, now).record
        out.append(record)
    return out


def test_power_loss_is_failed_after_two_witnesses_agree_for_confirm_after() -> None:
    states = run(
        [
            (0, {"nova": False, "bmc": False, "probe": False}),
            (1, {"nova": False, "bmc": True, "probe": False}),  # BMC: off
            (3, {"nova": False, "bmc": True, "probe": True}),  # probes failing too
            (7, {"nova": False, "bmc": True, "probe": True}),  # 4 s of agreement: not yet
            (8, {"nova": False, "bmc": True, "probe": True}),  # 5 s: failed
        ]
    )
    assert [r.state for r in states] == ["ok", "suspect", "suspect", "suspect", "failed"]
    assert "bmc lost" in states[-1].reason and "probe lost" in states[-1].reason


def test_nova_compute_crash_alone_stays_suspect_forever() -> None:
    ticks = [(float(t), {"nova": True, "bmc": False, "probe": False}) for t in range(0, 600, 5)]
    assert {r.state for r in run(ticks)} == {HostState.SUSPECT}


def test_hang_is_failed_on_nova_and_probe() -> None:
    ticks = [(float(t), {"nova": t >= 10, "bmc": False, "probe": t >= 12}) for t in range(0, 30)]
    states = run(ticks)
    first_failed = next(i for i, r in enumerate(states) if r.state == HostState.FAILED)
    assert first_failed == 12 + DEFAULT.confirm_after


def test_a_break_in_a_run_restarts_it() -> None:
    states = run(
        [
            (0, {"nova": True, "probe": True}),
            (4, {"nova": True, "probe": False}),  # the probe answered once: its run restarts
            (6, {"nova": True, "probe": True}),
            (10, {"nova": True, "probe": True}),
            (11, {"nova": True, "probe": True}),
        ]
    )
    assert [r.state for r in states] == ["suspect", "suspect", "suspect", "suspect", "failed"]


def test_no_data_neither_starts_nor_breaks_a_run() -> None:
    states = run(
        [
            (0, {"nova": True, "bmc": True}),
            (3, {"nova": True, "bmc": None}),  # BMC did not answer this time
            (5, {"nova": True, "bmc": None}),
        ]
    )
    assert states[-1].state == HostState.FAILED


def test_recovery_returns_to_ok() -> None:
    states = run([(0, {"nova": True, "probe": True}), (9, {"nova": True, "probe": True}),
                  (10, {"nova": False, "probe": False})])  # fmt: skip
    assert [r.state for r in states] == ["suspect", "failed", "ok"]
    assert states[-1].lost_since == ()


def test_records_past_detection_are_left_alone() -> None:
    for state in (HostState.FENCING, HostState.FENCED, HostState.MAINTENANCE):
        record = HostRecord("compute01", state=state, since=5.0, reason="x")
        result = assess(record, observe(100, nova=True, probe=True), DEFAULT, 100)
        assert result.record == record and not result.changed


def test_reading_helpers() -> None:
    assert nova_reading(100.0, True, 130.0, DEFAULT).lost is True  # 30 s old > 25 s
    assert nova_reading(110.0, True, 130.0, DEFAULT).lost is False
    assert nova_reading(None, False, 130.0, DEFAULT).lost is True
    assert nova_reading(None, None, 130.0, DEFAULT).lost is None
    assert [bmc_reading(p, 0).lost for p in ("off", "on", None)] == [True, False, None]
    assert probe_reading(2, 0, DEFAULT).lost is False and probe_reading(3, 0, DEFAULT).lost is True
    assert probe_reading(None, 0, DEFAULT).lost is None


SIGNALS = [s.value for s in Signal]
tick_lost = st.dictionaries(st.sampled_from(SIGNALS), st.sampled_from([True, False, None]))
histories = st.lists(st.tuples(st.floats(0.1, 20.0), tick_lost), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_failed_only_with_two_signals_lost_for_confirm_after(history) -> None:
    """Property: whatever the readings, ``failed`` implies two signals each lost without a
    break for at least confirm_after — checked against the history itself, not the record."""
    now = 0.0
    record = HostRecord("compute01")
    runs: dict[str, float] = {}
    for gap, lost in history:
        now += gap
        for sig, value in lost.items():
            if value is True:
                runs.setdefault(sig, now)
            elif value is False:
                runs.pop(sig, None)
        record = assess(record, observe(now, **lost), DEFAULT, now).record
        held = [s for s, start in runs.items() if now - start >= DEFAULT.confirm_after]
        if record.state == HostState.FAILED:
            assert len(held) >= 2
        if not runs:
            assert record.state == HostState.OK
        if len(held) >= 2:
            assert record.state == HostState.FAILED


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SIGNALS), st.lists(st.floats(0.1, 60.0), min_size=1, max_size=50))
def test_one_signal_alone_never_fails_a_host(signal, gaps) -> None:
    now, record = 0.0, HostRecord("compute01")
    for gap in gaps:
        now += gap
        others = {s: False for s in SIGNALS if s != signal}
        record = assess(record, observe(now, **{signal: True}, **others), DEFAULT, now).record
        assert record.state == HostState.SUSPECT
