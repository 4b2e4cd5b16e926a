"""``hastack demo``: a simulated cloud, two host failures, and hastack recovering them live.

It starts a 20-host, 200-VM simulated cloud (Nova, Placement, Glance over HTTP; a real IPMI and
Redfish BMC per host; a TCP probe port per host) and the hastack controller against it, with
the same code and drivers ``hastack serve`` uses: openstacksdk, pyghmi, sushy, sqlite journal.
Two segments show mixed policies: ``gold`` protects every instance (shared storage), ``silver``
only instances tagged ``HA_Enabled=True`` and never rebuilds local disks.

It injects a power loss on a gold host and a kernel hang on a silver host, prints every
decision as it happens, then a timeline (failure → declared → fenced → first evacuation →
first and last instance ACTIVE) and checks the simulator's truth: no VM runs twice.
"""

from __future__ import annotations

import collections
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from hastack.config import load_config
from hastack.controller import build_controller
from hastack.engine.engine import TickReport
from hastack.engine.journal import StepState
from hastack.sim import faults
from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions
from hastack.sim.world import SimConfig
from hastack.timeline import of_all

POWER_HOST = "compute03"  # segment gold
HANG_HOST = "compute14"  # segment silver
DEADLINE = 240.0


def demo_config(sim: RunningSim, workdir: Path) -> Path:
    """The simulator's config with two segments and a demo-sized tick."""
    assert sim.files
    config: dict[str, Any] = sim.hastack_config(sim.files["clouds_yaml"])
    config["controller"] = {"name": "demo-controller", "tick": 1.0}
    config["store"] = {"driver": "sqlite", "path": str(workdir / "demo-journal.db")}
    config["segments"] = [
        {
            "name": "gold",
            "hosts": [f"compute{i:02d}" for i in range(1, 11)],
            "recovery": {"protect": "all", "shared_storage": True},
        },
        {
            "name": "silver",
            "hosts": ["compute*"],
            "recovery": {"protect": "opt-in", "shared_storage": False},
        },
    ]
    path = workdir / "hastack-demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _ipmi_power(sim: RunningSim, host: str) -> str:
    h = sim.world.hosts[host]
    if shutil.which("ipmitool") is None:
        return "(ipmitool not installed)"
    args = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(h.ipmi_port)]
    args += ["-U", h.bmc_username, "-E", "-C", "3", "power", "status"]
    env = {"IPMI_PASSWORD": h.bmc_password, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False, env=env)
    return (proc.stdout or proc.stderr).strip()


class Live:
    """Prints every event with its time since the failures, and a progress line now and then."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.last_progress = 0.0
        self.states: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, report: TickReport) -> None:
        t = time.monotonic() - self.start
        with self.lock:
            for event in report.events:
                print(f"  t+{t:5.1f}s  {event.subject}: {event.message}", flush=True)
            if t - self.last_progress >= 10 and report.leader:
                self.last_progress = t
                print(f"  t+{t:5.1f}s  -- {report.verdict}", flush=True)


def run(workdir: Path | None = None) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="hastack-demo-"))
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("hastack").setLevel(logging.WARNING)  # the demo prints the events
    options = SimOptions(
        spec=CloudSpec(hosts=20, instances=200, seed=42, ha_enabled_ratio=0.6),
        timing=SimConfig(evacuate_seconds=3.0),
        workdir=workdir,
    )
    print("== hastack demo: instance HA on a simulated OpenStack cloud ==")
    with RunningSim(options) as sim:
        config = load_config(demo_config(sim, workdir))
        print(f"  cloud       {sim.url} (20 hosts, 200 VMs; BMCs on IPMI and Redfish)")
        print(f"  config      {workdir / 'hastack-demo.yaml'} (profile {config.profile})")
        print("  segments    gold: compute01-10, every VM, shared storage")
        print("              silver: compute11-20, only HA_Enabled=True, local disks not rebuilt")
        controller = build_controller(config)
        engine = controller.engine
        thread = threading.Thread(target=engine.run_forever, name="controller", daemon=True)
        thread.start()
        time.sleep(3)  # let the controller take the lease and see every host healthy once
        print(f"\n  {engine.last_verdict}")
        victims = {
            h: [i.id for i in sim.world.instances.values() if i.host == h]
            for h in (POWER_HOST, HANG_HOST)
        }
        print(
            f"\nInjecting: power loss on {POWER_HOST} ({len(victims[POWER_HOST])} VMs), "
            f"kernel hang on {HANG_HOST} ({len(victims[HANG_HOST])} VMs)\n"
        )
        failed_at = time.time()
        start = time.monotonic()
        engine.listeners.append(Live(start))
        faults.fail(sim.world, POWER_HOST, "power")
        faults.fail(sim.world, HANG_HOST, "hang")
        done = _wait(engine, start)
        engine.stop()
        thread.join(timeout=30)
        ops = [op for op, _ in engine.journal.operations()]
        controller.close()
        _report(sim, ops, failed_at, victims)
        ok = done and _truth(sim)
    print("\nDemo finished." if ok else "\nDemo finished with problems (see above).")
    return 0 if ok else 1


def _wait(engine: Any, start: float) -> bool:
    while time.monotonic() - start < DEADLINE:
        states = {h: engine.records.get(h) for h in (POWER_HOST, HANG_HOST)}
        if all(
            r is not None and r.state.value in ("recovered", "fence_failed")
            for r in states.values()
        ):
            return True
        time.sleep(0.5)
    print(f"  gave up waiting after {DEADLINE:.0f}s")
    return False


def _report(
    sim: RunningSim, ops: list[Any], failed_at: float, victims: dict[str, list[str]]
) -> None:
    print("\nTimeline (seconds after the failures were injected)")
    print(
        f"  {'host':<10} {'declared':>8} {'fenced':>7} {'1st evac':>8} "
        f"{'1st ACTIVE':>10} {'last ACTIVE':>11}  result"
    )
    timelines = of_all(ops)
    for host in (POWER_HOST, HANG_HOST):
        tl = timelines.get(host)
        if tl is None:
            print(f"  {host:<10} not declared failed")
            continue
        r = tl.relative(failed_at)

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        print(
            f"  {host:<10} {f(r['declared']):>8} {f(r['fenced']):>7} "
            f"{f(r['first_evacuate_issued']):>8} {f(r['first_active']):>10} "
            f"{f(r['last_active']):>11}  {tl.recovered}/{tl.evacuations} evacuated, "
            f"{tl.failed} failed, {tl.skipped} left in place"
        )
    print("\nLeft in place, by reason")
    for op in ops:
        reasons: collections.Counter[str] = collections.Counter()
        for s in op.steps:
            if s.kind == "evacuate" and s.params.get("skip"):
                reasons[f"{s.params['skip']}: {s.result.split(';')[0]}"] += 1
            elif s.kind == "evacuate" and s.state == StepState.FAILED:
                reasons[f"failed: {s.result}"] += 1
        for why, n in sorted(reasons.items()):
            print(f"  {op.subject}: {n} x {why}")
    print("\nOutside view: the BMCs over ipmitool")
    for host in victims:
        print(f"  {host}: {_ipmi_power(sim, host)}")


def _truth(sim: RunningSim) -> bool:
    with sim.world.lock:
        twice = [i.id for i in sim.world.instances.values() if len(i.running_on) > 1]
        stranded = [
            i.id
            for i in sim.world.instances.values()
            if i.host in (POWER_HOST, HANG_HOST) and i.running_on
        ]
    print("\nThe simulator's truth")
    print(f"  VMs running on two hosts: {len(twice)}")
    print(f"  VMs still running on the failed hosts: {len(stranded)}")
    return not twice and not stranded
