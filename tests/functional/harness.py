"""The end-to-end harness: a simulated cloud served over HTTP in this process (Nova, Placement,
Glance, Neutron, a real IPMI and Redfish BMC and a TCP probe port per host) and the controller
built with its production wiring (:func:`hastack.controller.build_controller`: openstacksdk,
pyghmi, sushy, sqlite journal), its engine on a thread.  Failures are injected with the
functions ``hastack sim fail`` uses; outcomes are checked against the simulator's physical
truth."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hastack.clock import SystemClock
from hastack.config import load_config
from hastack.controller import Controller, build_controller
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.journal import Journal, Operation, StepState
from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions
from hastack.sim.world import SimConfig

TIMING = SimConfig(report_interval=2, service_down_time=12, evacuate_seconds=1, host_boot_seconds=1)
DETECT = 40.0  # seconds to wait for a failure to be declared and acted on


# ---------------------------------------------------------------- harness


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails the test past ``seconds``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"not within {seconds:g}s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


class Harness:
    """One simulated cloud, its controller configuration, and a controller running on it."""

    def __init__(self, sim: RunningSim, workdir: Path) -> None:
        self.sim = sim
        self.workdir = workdir
        self.raw: dict[str, Any] = sim.hastack_config(sim.files["clouds_yaml"])
        self.raw["profile"] = "fast"
        self.raw["controller"] = {"name": "e2e-controller", "tick": 0.5}
        self.raw["store"] = {"driver": "sqlite", "path": str(workdir / "journal.db")}
        self.raw["segments"] = [
            {
                "name": "all",
                "hosts": ["*"],
                "recovery": {"protect": "all", "shared_storage": True},
            }
        ]
        self.controller: Controller | None = None
        self.thread: threading.Thread | None = None

    @property
    def world(self) -> Any:
        return self.sim.world

    @property
    def engine(self) -> Any:
        assert self.controller is not None
        return self.controller.engine

    def write_config(self) -> Path:
        path = self.workdir / "hastack-e2e.yaml"
        path.write_text(yaml.safe_dump(self.raw, sort_keys=False))
        path.chmod(0o600)
        return path

    def start(self, *, healthy: bool = True) -> Controller:
        assert self.thread is None
        self.controller = build_controller(load_config(self.write_config()))
        self.thread = threading.Thread(
            target=self.controller.engine.run_forever, name="e2e-controller", daemon=True
        )
        self.thread.start()
        if not healthy:
            return self.controller
        wait_for(
            lambda: (
                len(self.engine.records) == len(self.world.hosts)
                and all(r.state.value == "ok" for r in self.engine.records.values())
            ),
            15,
            "the controller leads and sees every host ok",
        )
        return self.controller

    def stop(self) -> None:
        if self.controller is None:
            return
        self.engine.stop()
        assert self.thread is not None
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the engine thread did not stop"
        self.controller.close()
        self.controller, self.thread = None, None

    # ------------------------------------------------------------ views

    def state(self, host: str) -> str | None:
        record = self.engine.records.get(host)
        return None if record is None else str(record.state.value)

    def wait_state(self, host: str, state: str, seconds: float = DETECT) -> float:
        return wait_for(
            lambda: self.state(host) == state,
            seconds,
            f"{host} reaches {state} (now {self.state(host)}; {self.engine.last_verdict})",
        )

    def ops(self, host: str) -> list[Operation]:
        return [op for op in self.journal() if op.subject == host]

    def journal(self) -> list[Operation]:
        """Every operation in the journal; read from the sqlite file when no controller runs."""
        if self.controller is not None:
            return [op for op, _ in self.engine.journal.operations()]
        store = SqliteStore(self.raw["store"]["path"], SystemClock())
        try:
            return [op for op, _ in Journal(store).operations()]
        finally:
            store.close()

    def op(self, host: str) -> Operation:
        ops = self.ops(host)
        assert len(ops) == 1, f"expected one recovery of {host}, found {len(ops)}"
        return ops[0]

    def busiest_host(self) -> str:
        with self.world.lock:
            counts = collections.Counter(
                i.host for i in self.world.instances.values() if i.host is not None
            )
        return max(sorted(counts), key=lambda h: counts[h])

    def instances_on(self, host: str) -> list[str]:
        with self.world.lock:
            return sorted(i.id for i in self.world.instances.values() if i.host == host)

    def evacuations(self) -> collections.Counter[str]:
        with self.world.lock:
            return collections.Counter(
                m.instance_id
                for m in self.world.migrations.values()
                if m.migration_type == "evacuation"
            )

    def device_name(self, host: str, level: int) -> str:
        spec = self.raw["hosts"][host]["fencing"][level]["devices"][0]
        if spec["type"] == "ipmi":
            return f"ipmi {spec['address']}:{spec['port']}"
        return f"redfish {spec['address'].rstrip('/')}{spec['system']}"

    # ------------------------------------------------------------ truth

    def assert_moved_once(self, host: str, victims: list[str]) -> None:
        """Every victim is, in Nova and in fact, running exactly once, on another host."""
        assert victims
        with self.world.lock:
            for vid in victims:
                inst = self.world.instances[vid]
                assert inst.host not in (None, host), (inst.name, inst.host)
                assert inst.running_on == {inst.host}, (inst.name, inst.host, inst.running_on)
                assert inst.status == "ACTIVE", (inst.name, inst.status)
            twice = {i.name: i.running_on for i in self.world.instances.values()}
            assert all(len(hosts) <= 1 for hosts in twice.values()), twice

    def assert_all_evacuated(self, op: Operation, victims: list[str]) -> None:
        evacs = {s.params["instance"]: s for s in op.steps if s.kind == "evacuate"}
        assert sorted(evacs) == sorted(victims)
        bad = {i: (s.state, s.result) for i, s in evacs.items() if s.state != StepState.DONE}
        assert not bad, bad


def cloud_factory(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """``cloud(hosts=8, instances=40, ...)``: a started simulator and its harness; everything
    started is stopped when the generator closes."""
    started: list[tuple[RunningSim, Harness]] = []

    def make(
        hosts: int = 8, instances: int = 40, timing: SimConfig = TIMING, **spec: Any
    ) -> Harness:
        options = SimOptions(
            spec=CloudSpec(
                hosts=hosts, instances=instances, seed=11, anti_affinity_groups=0, **spec
            ),
            timing=timing,
            workdir=tmp_path / "sim",
        )
        sim = RunningSim(options).start()
        harness = Harness(sim, tmp_path)
        started.append((sim, harness))
        return harness

    yield make
    for sim, harness in reversed(started):
        try:
            harness.stop()
        finally:
            sim.stop()
