"""The fixed sample of the fault campaign that ``make test`` runs (``make chaos N=...`` runs
longer ones): seeds 0-299 of generated fault histories against the real engine in virtual
time, every invariant checked after every tick.  No violation is allowed, and the sample must
exercise every kind of fault the generator knows."""

from __future__ import annotations

from hastack.chaos.campaign import campaign
from hastack.chaos.history import KINDS

SAMPLE = 300


def test_a_fixed_sample_of_seeds_keeps_every_invariant() -> None:
    report = campaign(SAMPLE, first=0, workers=2)
    assert report.runs == SAMPLE
    assert report.violations == [], "\n".join(f"seed {s}: {v}" for s, v in report.violations)
    missing = set(KINDS) - set(report.faults)
    assert not missing, f"the sample never injects {sorted(missing)}"
    assert report.checks > SAMPLE * 1000  # after every tick: about 400 ticks a run
    assert report.actions > SAMPLE  # hastack did act: fenced, evacuated, moved routers
    summary = report.summary()
    assert summary.startswith(f"{SAMPLE} runs, ") and summary.endswith(", 0 violations")
