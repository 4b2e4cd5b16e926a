"""``hastack demo``: a simulated cloud, three node failures, and hastack recovering them live.

It starts a 20-host, 200-VM simulated cloud with 3 network nodes and 30 routers (Nova,
Placement, Glance, Neutron over HTTP; a real IPMI and Redfish BMC per node; a TCP probe port per
node) and the hastack controller against it, with the same code and drivers ``hastack serve``
uses: openstacksdk, pyghmi, sushy, sqlite journal.
Two segments show mixed policies: ``gold`` protects every instance (shared storage), ``silver``
only instances tagged ``HA_Enabled=True`` and never rebuilds local disks.

It injects a power loss on a gold host, a kernel hang on a silver host and a power loss on a
network node, prints every decision as it happens, then a timeline (failure → declared →
fenced → first evacuation → first and last instance ACTIVE; routers moved and verified) and
checks the simulator's truth: no VM runs twice, no router forwards from two hosts, every router
of the dead node forwards elsewhere.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import secrets
import shutil
import socket
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
from hastack.policy import netrecovery
from hastack.sim import faults
from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions
from hastack.sim.world import SimConfig
from hastack.timeline import of_all

POWER_HOST = "compute03"  # segment gold
HANG_HOST = "compute14"  # segment silver
NETWORK_NODE = "network02"
DEADLINE = 240.0


@dataclasses.dataclass(frozen=True)
class DemoApi:
    """The demo's API tokens (fresh each run), and how to show them to the person watching."""

    reader: str
    operator: str

    @classmethod
    def new(cls) -> DemoApi:
        return cls(f"reader-{secrets.token_urlsafe(16)}", f"operator-{secrets.token_urlsafe(16)}")

    def section(self, listen: str) -> dict[str, Any]:
        tokens = [
            {"name": "demo-reader", "role": "reader", "token": self.reader},
            {"name": "demo-operator", "role": "operator", "token": self.operator},
        ]
        return {"listen": listen, "tokens": tokens}

    def dashboard(self, url: str) -> str:
        return f"{url}/#token={self.reader}"

    def cli(self, url: str) -> str:
        return f"HASTACK_URL={url} HASTACK_TOKEN={self.operator} hastack host list"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(sim: RunningSim, workdir: Path, api: DemoApi) -> Path:
    """The simulator's config with two segments, a demo-sized tick and the API."""
    assert sim.files
    config: dict[str, Any] = sim.hastack_config(sim.files["clouds_yaml"])
    config["controller"] = {"name": "demo-controller", "tick": 1.0}
    config["api"] = api.section("127.0.0.1:0")
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


def run(workdir: Path | None = None, *, keep_running: bool = False) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="hastack-demo-"))
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("hastack").setLevel(logging.WARNING)  # the demo prints the events
    options = SimOptions(
        spec=CloudSpec(
            hosts=20,
            instances=200,
            seed=42,
            ha_enabled_ratio=0.6,
            network_nodes=3,
            routers=30,
            networks=10,
        ),
        timing=SimConfig(evacuate_seconds=3.0),
        workdir=workdir,
    )
    print("== hastack demo: instance and network HA on a simulated OpenStack cloud ==")
    with RunningSim(options) as sim:
        api = DemoApi.new()
        config = load_config(demo_config(sim, workdir, api))
        print(
            f"  cloud       {sim.url} (20 hosts, 200 VMs, 3 network nodes, 30 routers; "
            "BMCs on IPMI and Redfish)"
        )
        print(f"  config      {workdir / 'hastack-demo.yaml'} (profile {config.profile})")
        print("  segments    gold: compute01-10, every VM, shared storage")
        print("              silver: compute11-20, only HA_Enabled=True, local disks not rebuilt")
        controller = build_controller(config)
        engine = controller.engine
        if controller.api is not None:
            print(f"  dashboard   {api.dashboard(controller.api.url)}")
            print(f"  CLI         {api.cli(controller.api.url)}")
        thread = threading.Thread(target=engine.run_forever, name="controller", daemon=True)
        thread.start()
        time.sleep(3)  # let the controller take the lease and see every host healthy once
        print(f"\n  {engine.last_verdict}")
        victims = {
            h: [i.id for i in sim.world.instances.values() if i.host == h]
            for h in (POWER_HOST, HANG_HOST)
        }
        with sim.world.lock:
            routers = sim.world.neutron.routers_hosted_on(NETWORK_NODE)
        print(
            f"\nInjecting: power loss on {POWER_HOST} ({len(victims[POWER_HOST])} VMs), "
            f"kernel hang on {HANG_HOST} ({len(victims[HANG_HOST])} VMs), "
            f"power loss on {NETWORK_NODE} ({len(routers)} routers)\n"
        )
        failed_at = time.time()
        start = time.monotonic()
        engine.listeners.append(Live(start))
        faults.fail(sim.world, POWER_HOST, "power")
        faults.fail(sim.world, HANG_HOST, "hang")
        faults.fail(sim.world, NETWORK_NODE, "power")
        done, routers_at = _wait(engine, start, sim, routers)
        ops = [op for op, _ in engine.journal.operations()]
        _report(sim, ops, failed_at, victims)
        _report_network(ops, failed_at, routers_at)
        ok = done and _truth(sim, routers)
        if keep_running and controller.api is not None:
            print(f"\nStill running; Ctrl-C stops. Dashboard: {api.dashboard(controller.api.url)}")
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        engine.stop()
        thread.join(timeout=30)
        controller.close()
    print("\nDemo finished." if ok else "\nDemo finished with problems (see above).")
    return 0 if ok else 1


def _wait(
    engine: Any, start: float, sim: RunningSim, routers: list[str]
) -> tuple[bool, float | None]:
    """Until both hosts are recovered (or need a human) and every router of the dead network
    node forwards elsewhere; the second's wall time too."""
    routers_at: float | None = None
    while time.monotonic() - start < DEADLINE:
        if routers_at is None and _forwarding_elsewhere(sim, routers) == len(routers):
            routers_at = time.time()
        states = {h: engine.records.get(h) for h in (POWER_HOST, HANG_HOST)}
        hosts_done = all(
            r is not None and r.state.value in ("recovered", "fence_failed")
            for r in states.values()
        )
        if hosts_done and routers_at is not None:
            return True, routers_at
        time.sleep(0.5)
    print(f"  gave up waiting after {DEADLINE:.0f}s")
    return False, routers_at


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


def _forwarding_elsewhere(sim: RunningSim, routers: list[str]) -> int:
    """How many of ``routers`` forward from exactly one host, not the dead network node."""
    with sim.world.lock:
        state = sim.world.neutron
        return sum(
            1
            for r in routers
            if len(hosts := state.forwarding(r)) == 1 and NETWORK_NODE not in hosts
        )


def _report_network(ops: list[Any], failed_at: float, all_forwarding: float | None) -> None:
    moves = [
        s
        for op in ops
        if op.kind == netrecovery.RECOVER_AGENT
        for s in op.steps
        if s.kind in (netrecovery.ROUTER, netrecovery.NETWORK)
    ]
    routers = [s for s in moves if s.kind == netrecovery.ROUTER]
    verified = [s.updated for s in routers if s.state == StepState.DONE]
    dhcp = [s for s in moves if s.kind == netrecovery.NETWORK and s.state == StepState.DONE]
    print(f"\nNetwork HA: {NETWORK_NODE}")
    print(f"  routers moved and verified: {len(verified)}/{len(routers)}")
    if verified:
        print(
            f"  first verified t+{min(verified) - failed_at:.1f}s, "
            f"last t+{max(verified) - failed_at:.1f}s"
        )
    if all_forwarding is not None:
        took = all_forwarding - failed_at
        print(f"  all forwarding elsewhere (the simulator's data plane) by t+{took:.1f}s")
    print(f"  DHCP bindings restored: {len(dhcp)}")


def _truth(sim: RunningSim, routers: list[str]) -> bool:
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
    with sim.world.lock:
        state = sim.world.neutron
        doubled = [
            r for r in state.routers if not state.routers[r].ha and len(state.forwarding(r)) > 1
        ]
    elsewhere = _forwarding_elsewhere(sim, routers)
    print(f"  routers forwarding from two hosts: {len(doubled)}")
    print(f"  {NETWORK_NODE}'s routers forwarding from one other host: {elsewhere}/{len(routers)}")
    return not twice and not stranded and not doubled and elsewhere == len(routers)
