"""Scenarios in virtual time: the real engine and core against the in-process simulator.

A :class:`Scenario` builds a :class:`~hastack.sim.world.World` on a
:class:`~hastack.clock.VirtualClock`, the in-process drivers (compute, probe, BMC), a sqlite
journal, and an :class:`~hastack.engine.engine.Engine` with ``inline=True``; ``run`` advances
the clock tick by tick, applying scheduled faults, and checks the safety invariants after every
tick (a violation raises :class:`InvariantViolated` with the history so far):

1. no instance runs on two hosts (the world's physical truth, isolated hosts included);
2. no evacuation from a host the journal holds no fence proof for;
3. no legacy router (or DVR SNAT) forwards on two hosts (the simulator's forwarding truth:
   namespaces outlive dead agents and isolated nodes keep forwarding).

With network nodes in the cloud spec, the engine also runs network HA over the in-process
Neutron (:class:`~hastack.sim.network_driver.SimNetwork`).

Deterministic: the same seed and faults give the same history.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Callable, Collection, Mapping
from typing import Any

from hastack.clock import VirtualClock
from hastack.domain.hosts import Reading, Signal
from hastack.domain.instances import RecoveryPolicy
from hastack.drivers.signals.bmc import BmcPower
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.devices import FenceTopology
from hastack.engine.engine import Engine, EngineOptions, TickReport
from hastack.engine.journal import OpState
from hastack.policy import netrecovery, recovery
from hastack.policy.detection import PROFILES, DetectionProfile, probe_reading
from hastack.policy.guards import GuardPolicy
from hastack.ports.fencing import FenceDevice
from hastack.ports.signals import SignalSource
from hastack.sim import faults
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.drivers import SimCompute
from hastack.sim.fence import SimBmc
from hastack.sim.network_driver import SimNetwork
from hastack.sim.truth import split_brains
from hastack.sim.world import SimConfig, World


class InvariantViolated(AssertionError):
    pass


class SimProbe:
    """TCP reachability as the controller would see it: the host's OS answers when it is
    powered, not hung and not isolated."""

    signal = Signal.PROBE

    def __init__(self, world: World, profile: DetectionProfile) -> None:
        self.world = world
        self.profile = profile
        self.failures: dict[str, int] = {}

    def read(self, hosts: Collection[str], now: float) -> Mapping[str, Reading]:
        out = {}
        with self.world.lock:
            for name in hosts:
                host = self.world.hosts.get(name)
                if host is None:
                    continue
                up = host.power_on and not host.hung and not host.isolated
                count = 0 if up else self.failures.get(name, 0) + 1
                self.failures[name] = count
                out[name] = probe_reading(count, now, self.profile)
        return out


@dataclasses.dataclass
class Fault:
    at: float  # seconds after the scenario starts
    host: str
    mode: str  # a hastack.sim.faults mode, or "recover"


@dataclasses.dataclass
class ScenarioSpec:
    cloud: CloudSpec = dataclasses.field(default_factory=lambda: CloudSpec(hosts=10, instances=60))
    timing: SimConfig = dataclasses.field(default_factory=SimConfig)
    profile: str = "fast"
    policy: RecoveryPolicy = dataclasses.field(
        default_factory=lambda: RecoveryPolicy(shared_storage=True)
    )
    guards: GuardPolicy = dataclasses.field(default_factory=GuardPolicy)
    faults: list[Fault] = dataclasses.field(default_factory=list)
    fence_levels: int = 1  # sim BMCs per host (each level one device)
    no_fencing: frozenset[str] = frozenset()  # hosts configured without any fence device
    broken_levels: dict[int, str] = dataclasses.field(default_factory=dict)  # level -> error
    tick: float = 1.0
    max_parallel: int = 20
    retries: int = 2
    rejoin_auto: bool = True
    network: netrecovery.NetSettings | None = None  # None: defaults, stale_after from timing


class Scenario:
    def __init__(self, spec: ScenarioSpec, workdir: pathlib.Path | None = None) -> None:
        self.spec = spec
        self.clock = VirtualClock()
        self.world = World(self.clock, seed=spec.cloud.seed, config=spec.timing)
        build_world(self.world, spec.cloud)
        self.api_faults: list[str] = []
        self.compute = SimCompute(self.world, faults=self._api_fault)
        self.network = SimNetwork(self.world) if self.world.neutron.agents else None
        self.net_settings = spec.network or netrecovery.NetSettings(
            stale_after=2.5 * spec.timing.neutron.report_interval
        )
        profile = PROFILES[spec.profile]
        hosts = sorted(self.world.hosts)
        topology_map: dict[str, list[list[FenceDevice]]] = {}
        for h in hosts:
            if h in spec.no_fencing:
                topology_map[h] = []
                continue
            topology_map[h] = [
                [SimBmc(self.world, h, kind=f"bmc{n + 1}", broken=spec.broken_levels.get(n))]
                for n in range(spec.fence_levels)
            ]
        self.topology = FenceTopology(topology_map)
        segments = {h: recovery.Segment("default", spec.policy) for h in hosts}
        self.settings = recovery.Settings(
            profile=profile,
            guards=spec.guards,
            fence_levels=self.topology.levels(),
            segments=segments,
            max_parallel=spec.max_parallel,
            retries=spec.retries,
            rejoin_auto=spec.rejoin_auto,
        )
        self._tmp = tempfile.TemporaryDirectory() if workdir is None else None
        base = pathlib.Path(self._tmp.name) if self._tmp else workdir
        assert base is not None
        self.store_path = base / "journal.db"
        self.store = SqliteStore(self.store_path, self.clock)
        self.engine = self._engine()
        self.history: list[str] = []
        self.start = self.clock.now()
        self.evacuated_from: dict[str, str] = {}  # instance -> source, as the world saw it
        self.unproven: list[str] = []
        self.world.subscribe(self._on_world)

    def _engine(self, name: str = "controller-1") -> Engine:
        signals: list[SignalSource] = [
            SimProbe(self.world, self.settings.profile),
            BmcPower(self.topology.first_level(), timeout=1.0, workers=4),
        ]
        options = EngineOptions(name=name, tick=self.spec.tick, inline=True)
        return Engine(
            self.settings,
            self.compute,
            signals,
            self.topology,
            self.store,
            self.clock,
            options,
            hosts=self.world.hosts,
            network=self.network,
            net_settings=self.net_settings,
        )

    def _api_fault(self, operation: str) -> None:
        from hastack.errors import TransientError  # noqa: PLC0415

        if operation in self.api_faults:
            raise TransientError(f"injected Nova API error on {operation}")

    def _on_world(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "evacuate":
            instance, source = str(fields.get("id")), str(fields.get("source"))
            self.evacuated_from[instance] = source
            if not any(
                op.subject == source and recovery.proof_of(op) is not None
                for op in self.engine.ops.values()
            ):
                self.unproven.append(f"{instance} evacuated from {source} without a fence proof")

    # ------------------------------------------------------------ running

    @property
    def elapsed(self) -> float:
        return self.clock.now() - self.start

    def restart_controller(self) -> None:
        """Simulate a crash and restart: a new engine over the same journal, nothing in memory."""
        self.engine.close()
        self.store.close()
        self.store = SqliteStore(self.store_path, self.clock)
        self.engine = self._engine("controller-2")
        self.history.append(f"{self.elapsed:7.1f} controller restarted")

    def step(self) -> TickReport:
        for fault in self.spec.faults:
            if fault.at <= self.elapsed < fault.at + self.spec.tick:
                if fault.mode == "recover":
                    faults.recover(self.world, fault.host)
                else:
                    faults.fail(self.world, fault.host, fault.mode)
                self.history.append(f"{self.elapsed:7.1f} fault {fault.mode} on {fault.host}")
        report = self.engine.tick()
        for event in report.events:
            self.history.append(f"{self.elapsed:7.1f} {event.subject}: {event.message}")
        self.check_invariants()
        self.clock.advance(self.spec.tick)
        return report

    def run(self, seconds: float, until: Callable[[Scenario], bool] | None = None) -> bool:
        end = self.elapsed + seconds
        while self.elapsed < end:
            self.step()
            if until is not None and until(self):
                return True
        return until is None

    def close(self) -> None:
        self.engine.close()
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ invariants and views

    def check_invariants(self) -> None:
        doubles, doubled = split_brains(self.world)
        if doubles:
            self._violate(f"instances running on two hosts: {doubles}")
        if doubled:
            self._violate(f"routers forwarding on two hosts: {doubled}")
        if self.unproven:
            self._violate("; ".join(self.unproven))

    def _violate(self, what: str) -> None:
        raise InvariantViolated(what + "\n" + "\n".join(self.history[-40:]))

    def state_of(self, host: str) -> str:
        record = self.engine.records.get(host)
        return record.state.value if record else "unknown"

    def operations(self) -> list[Any]:
        return [op for op, _ in self.engine.journal.operations()]

    def open_operations(self) -> list[Any]:
        return [op for op in self.operations() if op.state == OpState.OPEN]

    def instances_on(self, host: str) -> list[Any]:
        with self.world.lock:
            return [i for i in self.world.instances.values() if i.host == host]

    def running_where(self, instance: str) -> set[str]:
        with self.world.lock:
            return set(self.world.instances[instance].running_on)
