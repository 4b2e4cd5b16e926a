"""Campaigns: many seeded runs, a report, and what to do with a failing seed.

- :func:`campaign` plays seeds ``first .. first + runs - 1`` on worker processes and returns a
  :class:`Report` (runs, faults injected by kind, invariant checks, violations) whose
  :meth:`Report.summary` is the one line ``make chaos`` ends with.
- :func:`shrink` takes a failing plan and drops events (one at a time, then pairs) as long as
  the run still fails the same way: what is left is the smallest history that fails.
- :func:`scenario_file` turns a plan into a regression scenario: the plan and its golden
  timeline, replayed by ``tests/chaos/test_regressions.py``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from hastack.chaos.history import Plan, generate
from hastack.chaos.run import Outcome, play


@dataclasses.dataclass(frozen=True)
class Result:
    """A run, reduced to what a report needs (cheap to send between processes)."""

    seed: int
    violation: str | None
    faults: dict[str, int]
    checks: int
    actions: int


def run_seed(seed: int) -> Result:
    logging.disable(logging.CRITICAL)  # thousands of runs: the engine's own log is noise here
    outcome = play(generate(seed))
    return Result(
        seed,
        outcome.violation,
        outcome.stats["faults"],
        outcome.stats["checks"],
        outcome.stats["actions"],
    )


@dataclasses.dataclass
class Report:
    runs: int = 0
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    checks: int = 0
    actions: int = 0
    violations: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: Result) -> None:
        self.runs += 1
        self.faults.update(result.faults)
        self.checks += result.checks
        self.actions += result.actions
        if result.violation is not None:
            self.violations.append((result.seed, result.violation.split("\n", 1)[0]))

    def summary(self) -> str:
        faults = sum(self.faults.values())
        return (
            f"{self.runs} runs, {faults} faults, {self.checks} invariant checks, "
            f"{len(self.violations)} violations"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "faults": sum(self.faults.values()),
            "faults_by_kind": dict(sorted(self.faults.items())),
            "invariant_checks": self.checks,
            "side_effects": self.actions,
            "violations": [{"seed": s, "violation": v} for s, v in sorted(self.violations)],
            "seconds": round(self.seconds, 1),
            "summary": self.summary(),
        }


def campaign(
    runs: int,
    first: int = 0,
    workers: int = 2,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    report = Report()
    started = time.monotonic()
    seeds = range(first, first + runs)
    for result in _results(seeds, workers):
        report.add(result)
        if progress is not None:
            progress(report)
    report.seconds = time.monotonic() - started
    return report


def _results(seeds: range, workers: int) -> Iterator[Result]:
    if workers <= 1:
        yield from map(run_seed, seeds)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(run_seed, seeds, chunksize=8)


# ---------------------------------------------------------------- shrinking


def invariant_of(violation: str | None) -> str | None:
    """``invariant 4`` from a violation's first line: what "fails the same way" compares."""
    if violation is None:
        return None
    found = re.match(r"invariant \d+", violation)
    return found.group(0) if found else violation.split(":", 1)[0]


def shrink(
    plan: Plan,
    player: Callable[[Plan], Outcome] = play,
    still: Callable[[Outcome], bool] | None = None,
) -> tuple[Plan, Outcome]:
    """The smallest plan (by events) that still fails like ``plan``, or for which ``still``
    holds when given: events are dropped one at a time, then in pairs, until no drop keeps
    the failure."""
    first = player(plan)
    wanted = invariant_of(first.violation)

    def fails(outcome: Outcome) -> bool:
        if still is not None:
            return still(outcome)
        return outcome.violation is not None and invariant_of(outcome.violation) == wanted

    if not fails(first):
        raise ValueError(f"seed {plan.seed}: the plan does not fail; nothing to shrink")
    best, best_outcome = plan, first
    changed = True
    while changed:
        changed = False
        n = len(best.events)
        drops = [{i} for i in range(n)] + [{i, j} for i in range(n) for j in range(i + 1, n)]
        for drop in drops:
            candidate = best.without(drop)
            outcome = player(candidate)
            if fails(outcome):
                best, best_outcome, changed = candidate, outcome, True
                break
    return best, best_outcome


# ---------------------------------------------------------------- regression scenarios


def scenario_file(name: str, plan: Plan, outcome: Outcome, why: str) -> dict[str, Any]:
    return {
        "name": name,
        "why": why,
        "plan": plan.to_dict(),
        "violation": outcome.violation.split("\n", 1)[0] if outcome.violation else None,
        "timeline": outcome.history,
    }


def write_scenario(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=120))


def read_scenario(path: Path) -> tuple[dict[str, Any], Plan]:
    doc = yaml.safe_load(path.read_text())
    return doc, Plan.from_dict(doc["plan"])
