"""Kill the controller at every step of a recovery and start it again: it resumes from the
journal, checks the world before repeating a step, and never evacuates an instance twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from hastack.sim.build import CloudSpec
from hastack.sim.scenario import Fault, Scenario, ScenarioSpec

SIDE_EFFECTS = ("force_down", "evacuate", "reset_state", "start", "enable")


class Crash(BaseException):
    """The process dies: not an Exception, so nothing in the engine catches it."""


class CrashingCompute:
    """Passes every call through; the ``n``-th side effect kills the process, either just
    before it reaches Nova or just after Nova accepted it."""

    def __init__(self, inner: Any, n: int, after: bool) -> None:
        self.inner, self.n, self.after = inner, n, after
        self.count = 0
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in SIDE_EFFECTS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if self.count == self.n and not self.crashed and not self.after:
                self.crashed = True
                raise Crash(f"killed before {name}{args}")
            result = attr(*args, **kwargs)
            if self.count == self.n and not self.crashed and self.after:
                self.crashed = True
                raise Crash(f"killed after {name}{args}")
            return result

        return call


def evacuations(s: Scenario) -> Counter[str]:
    counts: Counter[str] = Counter()
    with s.world.lock:
        for mig in s.world.migrations.values():
            if mig.migration_type == "evacuation":
                counts[mig.instance_id] += 1
    return counts


def run_once(seed: int, n: int, after: bool) -> tuple[Scenario, CrashingCompute, int]:
    faults = [Fault(5, "compute03", "power"), Fault(90, "compute03", "recover")]
    spec = ScenarioSpec(cloud=CloudSpec(hosts=8, instances=60, seed=seed), faults=faults)
    s = Scenario(spec)
    crashing = CrashingCompute(s.compute, n, after)
    s.engine.compute = crashing
    restarts = 0
    while s.elapsed < 400 and (s.open_operations() or not s.operations()):
        try:
            s.step()
        except Crash:
            restarts += 1
            s.clock.advance(s.spec.tick)
            s.restart_controller()
    return s, crashing, restarts


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_crash_at_every_side_effect_then_resume(seed: int, after: bool) -> None:
    dry, counter, _ = run_once(seed, 0, after)
    total = counter.count
    victims = [vm for vm, _ in evacuations(dry).items()]
    dry.close()
    assert total >= len(victims) + 2 >= 7, "force-down, the evacuations and the rejoin"
    for n in range(1, total + 1):
        s, crashing, restarts = run_once(seed, n, after)
        with s:
            where = f"crash {'after' if after else 'before'} side effect {n}/{total}"
            assert crashing.crashed and restarts == 1, where
            assert not s.open_operations(), where + "\n" + "\n".join(s.history)
            twice = {vm: c for vm, c in evacuations(s).items() if c > 1}
            assert not twice, f"{where}: evacuated twice: {twice}\n" + "\n".join(s.history)
            assert set(evacuations(s)) == set(victims), where
            for vm in victims:
                inst = s.world.instances[vm]
                assert inst.host != "compute03" and s.running_where(vm) == {inst.host}, where
            assert s.state_of("compute03") == "ok", f"{where}: rejoined after the resume"
