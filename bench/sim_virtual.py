"""The simulator's in-process face in virtual time: how much cloud time a wall-clock second buys.

A seeded scenario on a 1,000-host, 10,000-VM world: every simulated minute one host loses power,
is forced down once Nova reports it down, has every VM evacuated, and comes back ten minutes
later.  One simulated hour, run twice to show it is deterministic.
"""

from __future__ import annotations

import time
from typing import Any

from hastack.clock import VirtualClock
from hastack.sim import faults, servers
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.world import World

HOSTS, INSTANCES, SIM_SECONDS = 1_000, 10_000, 3_600


def scenario(seed: int) -> tuple[list[tuple[float, str]], int]:
    clock = VirtualClock()
    world = World(clock, seed=seed)
    build_world(world, CloudSpec(hosts=HOSTS, instances=INSTANCES, seed=seed))
    log: list[tuple[float, str]] = []
    world.subscribe(lambda kind, f: log.append((clock.now(), f"{kind} {sorted(f.items())}")))
    names = sorted(world.hosts)
    evacuations = 0
    for minute in range(SIM_SECONDS // 60):
        victim = names[world.rng.randrange(len(names))]
        faults.fail(world, victim, "power")
        clock.advance(world.config.service_down_time + world.config.report_interval)
        world.update_service(victim, forced_down=True)
        for vm in world.list_instances(host=victim):
            try:
                servers.evacuate_server(world, vm.id)
                evacuations += 1
            except Exception as exc:  # a refusal is part of the scenario, not a crash
                log.append((clock.now(), f"refused {type(exc).__name__}"))
        if minute >= 10:
            back = names[(names.index(victim) + 1) % len(names)]
            faults.recover(world, back)
        clock.advance(60 - world.config.service_down_time - world.config.report_interval)
    return log, evacuations


def run() -> dict[str, Any]:
    started = time.perf_counter()
    first, evacuations = scenario(seed=1)
    wall = time.perf_counter() - started
    second, _ = scenario(seed=1)
    return {
        "hosts": HOSTS,
        "instances": INSTANCES,
        "simulated_s": SIM_SECONDS,
        "wall_s": round(wall, 2),
        "speedup": round(SIM_SECONDS / wall),
        "events": len(first),
        "evacuations": evacuations,
        "deterministic": first == second,
    }
