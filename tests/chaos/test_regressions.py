"""Regression scenarios (tests/chaos/scenarios/*.yaml), in the manner of Proxmox's ha-manager
tests: each file is a fault history that once broke an invariant or a recovery, shrunk to what
matters, with the golden timeline of what hastack now does.  A change of behaviour shows as a
diff of the timeline; when it is deliberate, ``python -m hastack.chaos replay FILE --update``
rewrites the golden timeline (and the diff goes into the review)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from hastack.chaos.campaign import read_scenario
from hastack.chaos.run import play

FILES = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


def test_there_are_scenarios() -> None:
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_replays_its_golden_timeline(path: Path) -> None:
    doc, plan = read_scenario(path)
    outcome = play(plan)
    assert outcome.violation is None, outcome.violation
    diff = "\n".join(difflib.unified_diff(doc["timeline"], outcome.history, lineterm=""))
    assert outcome.history == doc["timeline"], f"{path.name}: the timeline changed:\n{diff}"
