"""One campaign run: a :class:`~hastack.chaos.history.Plan` played against the real engine
(one to three controllers on one journal) and the in-process simulator in virtual time, with
the invariants (:mod:`hastack.chaos.invariants`) checked after every tick.

What stands between the engines and the world, per controller, is how faults reach hastack:

- :class:`ChaosStore`: the journal and lease, unreachable during a store outage or when this
  controller is cut off from it;
- :class:`ChaosCompute` and :class:`ChaosNetwork`: Nova and Neutron, failing or slow in a
  window; every side effect is written to the :class:`Action` log with the controller's lease
  as it stood, and a planned crash kills the controller at its n-th side effect;
- :class:`ChaosBmc`: the BMCs, lying when told to (stuck reporting power on).

A controller "crashes" by raising :class:`Crash` (a BaseException: nothing in the engine
catches it) and is replaced by a new one with nothing in memory; it "pauses" by not being
ticked, then wakes with its old lease in memory.
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
from pathlib import Path
from typing import Any, cast

from hastack.chaos.history import Event, Plan
from hastack.clock import VirtualClock
from hastack.domain.instances import RecoveryPolicy
from hastack.drivers.signals.bmc import BmcPower
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.devices import FenceTopology
from hastack.engine.engine import CONTROL, LEADER, Engine, EngineOptions
from hastack.errors import StoreUnavailable, TransientError
from hastack.policy import netrecovery, recovery
from hastack.policy.detection import PROFILES
from hastack.policy.guards import Budget, GuardPolicy
from hastack.ports.fencing import FenceDevice, FenceResult, PowerState
from hastack.ports.signals import SignalSource
from hastack.ports.store import Store
from hastack.sim import faults
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.drivers import SimCompute
from hastack.sim.fence import SimBmc
from hastack.sim.network_driver import SimNetwork
from hastack.sim.scenario import SimProbe
from hastack.sim.world import SimConfig, World

TICK = 1.0
LEASE_TTL = 6.0
EVACUATE_TIMEOUT = 90.0
SETTLE = 240.0  # seconds after the last fault for every recovery to finish or say why not
COMPUTE_EFFECTS = ("force_down", "evacuate", "reset_state", "start", "enable")
NETWORK_EFFECTS = ("add_router", "remove_router", "add_network", "remove_network")


class Crash(BaseException):
    """A controller process dies."""


@dataclasses.dataclass(frozen=True)
class Action:
    at: float
    controller: str
    epoch: int | None  # the lease the controller believed it held
    kind: str  # fence-off, evacuate, add_router, ...
    target: str


@dataclasses.dataclass
class Slot:
    """One controller: its engine, and what is being done to it."""

    name: str
    engine: Engine
    paused_until: float = -1.0
    crash_at: int = 0  # die at this side effect (0: never)
    crash_after: bool = False
    effects: int = 0


class ChaosStore:
    """The shared journal as one controller reaches it."""

    def __init__(self, inner: Store, run: Run, name: str) -> None:
        self._inner, self._run, self._name = inner, run, name

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._inner, attr)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            now = self._run.clock.now()
            if now < self._run.store_down_until:
                raise StoreUnavailable("injected: the store has no quorum")
            if now < self._run.cut_until.get(self._name, -1.0):
                raise StoreUnavailable(f"injected: {self._name} is cut off from the store")
            return target(*args, **kwargs)

        return call


class _Effects:
    """Side effects of one controller through a port: logged, maybe fatal."""

    def __init__(self, inner: Any, run: Run, slot_name: str, effects: tuple[str, ...]) -> None:
        self._inner, self._run, self._slot, self._effects = inner, run, slot_name, effects

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._inner, attr)
        if attr not in self._effects:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            what = " ".join(str(a) for a in args[:2])  # an instance, a host; agent and router
            self._run.effect(self._slot, attr, what, after=False)
            result = target(*args, **kwargs)
            self._run.effect(self._slot, attr, "", after=True)
            return result

        return call


class ChaosCompute(_Effects):
    pass


class ChaosNetwork(_Effects):
    pass


class ChaosBmc:
    """A simulated BMC as one controller calls it: logged, and lying when told to."""

    def __init__(self, inner: SimBmc, run: Run, slot_name: str) -> None:
        self._inner, self._run, self._slot = inner, run, slot_name
        self.name = inner.name

    def _lies(self) -> bool:
        return self._inner.host in self._run.lying

    def status(self, timeout: float) -> FenceResult:
        if self._lies():
            return FenceResult(self.name, "status", PowerState.ON, True, "power on", 0.0)
        return self._inner.status(timeout)

    def off(self, timeout: float) -> FenceResult:
        self._run.effect(self._slot, "fence-off", self._inner.host, after=False)
        if self._lies():
            why = "power still on after the request"
            return FenceResult(self.name, "off", PowerState.ON, False, why, 0.0)
        result = self._inner.off(timeout)
        self._run.effect(self._slot, "fence-off", "", after=True)
        return result

    def on(self, timeout: float) -> FenceResult:
        self._run.effect(self._slot, "fence-on", self._inner.host, after=False)
        return self._inner.on(timeout)


class Run:
    """One plan against the engine; :meth:`play` returns the :class:`Outcome`."""

    def __init__(self, plan: Plan, workdir: Path | None = None) -> None:
        from hastack.chaos.invariants import Checker  # noqa: PLC0415 (it imports Run's types)

        self.plan = plan
        self.clock = VirtualClock()
        timing = SimConfig(report_interval=2.0, service_down_time=12.0, host_boot_seconds=3.0)
        self.world = World(self.clock, seed=plan.seed, config=timing)
        spec = CloudSpec(
            hosts=plan.hosts,
            instances=plan.instances,
            seed=plan.seed,
            host_memory_mb=plan.host_memory_mb,
            anti_affinity_groups=0,
            network_nodes=plan.network_nodes,
            routers=plan.routers,
        )
        build_world(self.world, spec)
        self._tmp = tempfile.TemporaryDirectory() if workdir is None else None
        base = Path(self._tmp.name) if self._tmp else cast(Path, workdir)
        self.store = SqliteStore(base / "journal.db", self.clock)
        self.store_down_until = -1.0
        self.cut_until: dict[str, float] = {}
        self.nova_down_until = -1.0
        self.nova_slow: tuple[float, float] = (-1.0, 0.0)  # until, seconds per call
        self.neutron_down_until = -1.0
        self.neutron_slow: tuple[float, float] = (-1.0, 0.0)
        self.lying: set[str] = set()
        self.pauses: list[tuple[float, float]] = []  # operator pauses: [start, end)
        self._pausing = 0
        self.actions: list[Action] = []
        self.history: list[str] = []
        self.faults_injected: dict[str, int] = {}
        self.start = self.clock.now()
        hosts = sorted(self.world.hosts)
        policy = RecoveryPolicy(shared_storage=True)
        self.settings = recovery.Settings(
            profile=PROFILES["fast"],
            guards=GuardPolicy(
                budgets=(Budget("cloud", plan.budget_hosts, 50.0, 600.0),),
                cliff_hosts=plan.cliff_hosts,
                cliff_percent=40.0,
                cliff_window=30.0,
            ),
            fence_levels={},
            segments={h: recovery.Segment("default", policy) for h in hosts},
            max_parallel=10,
            fence_attempts=1,
            evacuate_timeout=EVACUATE_TIMEOUT,
        )
        self.net_settings = netrecovery.NetSettings(
            stale_after=2.5 * timing.neutron.report_interval
        )
        self._serial = 0
        self.slots = [self._slot(f"ctl-{i + 1}") for i in range(plan.controllers)]
        self.checker = Checker(self)
        self.world.subscribe(self.checker.on_world)

    # ------------------------------------------------------------ wiring

    def _slot(self, name: str) -> Slot:
        self._serial += 1
        name = f"{name}.{self._serial}"
        compute = SimCompute(self.world, faults=self._nova)
        devices: dict[str, list[list[FenceDevice]]] = {
            h: [[ChaosBmc(SimBmc(self.world, h, kind="bmc"), self, name)]]
            for h in sorted(self.world.hosts)
        }
        topology = FenceTopology(devices)
        settings = dataclasses.replace(self.settings, fence_levels=topology.levels())
        self.settings = settings
        signals: list[SignalSource] = [
            SimProbe(self.world, settings.profile),
            BmcPower(topology.first_level(), timeout=1.0, workers=2),
        ]
        network = None
        if self.world.neutron.agents:
            network = ChaosNetwork(
                SimNetwork(self.world, faults=self._neutron), self, name, NETWORK_EFFECTS
            )
        engine = Engine(
            settings,
            cast(Any, ChaosCompute(compute, self, name, COMPUTE_EFFECTS)),
            signals,
            topology,
            cast(Store, ChaosStore(self.store, self, name)),
            self.clock,
            EngineOptions(name=name, tick=TICK, lease_ttl=LEASE_TTL, inline=True),
            hosts=self.world.hosts,
            network=cast(Any, network),
            net_settings=self.net_settings,
        )
        return Slot(name, engine)

    def _nova(self, operation: str) -> None:
        now = self.clock.now()
        if now < self.nova_down_until:
            raise TransientError(f"injected Nova 503 on {operation}")
        until, seconds = self.nova_slow
        if now < until:
            self.clock.advance(seconds)

    def _neutron(self, operation: str) -> None:
        now = self.clock.now()
        if now < self.neutron_down_until:
            raise TransientError(f"injected Neutron 503 on {operation}")
        until, seconds = self.neutron_slow
        if now < until:
            self.clock.advance(seconds)

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)

    def effect(self, name: str, kind: str, target: str, *, after: bool) -> None:
        """Called around every side effect of controller ``name``: logs it (before it runs)
        and kills the controller at its planned side effect."""
        slot = self.slot(name)
        if not after:
            lease = slot.engine.lease
            epoch = lease.epoch if lease is not None else None
            self.actions.append(Action(self.elapsed, name, epoch, kind, target))
            self.checker.on_action(self.actions[-1])
            slot.effects += 1
        if slot.crash_at and slot.effects == slot.crash_at and slot.crash_after == after:
            slot.crash_at = 0
            raise Crash(f"{name} killed {'after' if after else 'before'} {kind} {target}")

    # ------------------------------------------------------------ running

    @property
    def elapsed(self) -> float:
        return self.clock.now() - self.start

    def leader(self) -> Slot | None:
        try:
            lease = self.store.current(LEADER)
        except StoreUnavailable:
            return None
        if lease is None:
            return None
        return next((s for s in self.slots if s.name == lease.holder), None)

    def note(self, text: str) -> None:
        self.history.append(f"{self.elapsed:6.0f} {text}")

    def apply(self, event: Event) -> None:
        self.faults_injected[event.kind] = self.faults_injected.get(event.kind, 0) + 1
        now = self.clock.now()
        kind, target = event.kind, event.target
        self.note(f"fault {event.describe()}")
        if kind in ("power", "hang", "isolate", "compute-crash"):
            faults.fail(self.world, target, kind)
        elif kind == "recover":
            self.lying.discard(target)
            faults.recover(self.world, target)
        elif kind in ("net-power", "net-isolate"):
            faults.fail(self.world, target, kind.removeprefix("net-"))
        elif kind == "bmc-lies":
            self.lying.add(target)
        elif kind.startswith("bmc-"):
            faults.fail(self.world, target, kind)
        elif kind == "flap":
            self._flap(target, event.duration, max(1, event.arg))
        elif kind == "nova-5xx":
            self.nova_down_until = now + event.duration
        elif kind == "nova-slow":
            self.nova_slow = (now + event.duration, float(event.arg))
        elif kind == "neutron-5xx":
            self.neutron_down_until = now + event.duration
        elif kind == "neutron-slow":
            self.neutron_slow = (now + event.duration, float(event.arg))
        elif kind == "store-outage":
            self.store_down_until = now + event.duration
        elif kind == "store-cut":
            cut = self.leader() or self.slots[0]
            self.cut_until[cut.name] = now + event.duration
        elif kind == "leader-crash":
            leader = self.leader()
            if leader is not None:
                leader.crash_at = leader.effects + (event.arg + 1) // 2
                leader.crash_after = event.arg % 2 == 1
        elif kind == "leader-pause":
            leader = self.leader()
            if leader is not None:
                leader.paused_until = now + LEASE_TTL + event.duration
        elif kind == "operator-pause":
            self._operator_pause(now, event.duration)
        elif kind == "mass":
            rng = random.Random(self.plan.seed * 7919 + int(event.at))
            computes = sorted(h for h in self.world.hosts if h.startswith("compute"))
            for host in rng.sample(computes, min(event.arg, len(computes))):
                faults.fail(self.world, host, "power")
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def _flap(self, host: str, duration: float, times: int) -> None:
        """``times`` cuts of ``host``'s network, each undone, spread over ``duration``."""
        period = max(2.0, duration / (2 * times))
        for i in range(2 * times):
            isolated = i % 2 == 0

            def toggle(isolated: bool = isolated) -> None:
                with self.world.lock:
                    h = self.world.hosts[host]
                    if h.power_on:
                        self.world.set_physical(h, isolated=isolated)

            self.clock.call_later(i * period, toggle)

    def _operator_pause(self, now: float, duration: float) -> None:
        """hastack's pause is one cluster-wide flag: of overlapping pauses, the last to end
        resumes (an operator's resume would end them all: that is a matter for operators)."""
        body = json.dumps({"operator": "chaos", "at": now})
        self.store.put(f"{CONTROL}paused", body)
        self.pauses.append((self.elapsed, self.elapsed + duration))
        self._pausing += 1

        def resume() -> None:
            self._pausing -= 1
            if self._pausing == 0:
                self.store.delete(f"{CONTROL}paused")

        self.clock.call_later(duration, resume)

    def step(self) -> None:
        for event in self._due():
            self.apply(event)
        for slot in list(self.slots):
            if self.clock.now() < slot.paused_until:
                continue
            try:
                report = slot.engine.tick()
            except Crash as exc:
                self.note(f"crash: {exc}")
                self._replace(slot)
                continue
            for said in report.events:
                self.note(f"{slot.name}: {said.subject}: {said.message}")
        self.checker.after_tick()
        self.clock.advance(TICK)

    def _replace(self, slot: Slot) -> None:
        slot.engine.lease = None  # a dead process releases nothing: its lease runs out
        slot.engine.close()
        fresh = self._slot(slot.name.partition(".")[0])
        self.slots[self.slots.index(slot)] = fresh

    def _due(self) -> list[Event]:
        now = self.elapsed
        return [e for e in self.plan.events if e.at <= now < e.at + TICK]

    def play(self) -> Outcome:
        from hastack.chaos.invariants import Violation  # noqa: PLC0415

        last = max((e.at + e.duration for e in self.plan.events), default=0.0)
        end = max(self.plan.horizon, last) + SETTLE
        try:
            while self.elapsed < end:
                self.step()
                if self.elapsed > max(self.plan.horizon, last) + 30 and self.checker.settled():
                    break
            self.checker.at_end()
        except Violation as exc:
            return Outcome(self.plan, str(exc), self.history, self._stats())
        finally:
            self.close()
        return Outcome(self.plan, None, self.history, self._stats())

    def _stats(self) -> dict[str, Any]:
        return {
            "faults": dict(self.faults_injected),
            "checks": self.checker.checks,
            "actions": len(self.actions),
            "seconds": round(self.elapsed),
        }

    def close(self) -> None:
        for slot in self.slots:
            slot.engine.close()
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


@dataclasses.dataclass
class Outcome:
    plan: Plan
    violation: str | None
    history: list[str]
    stats: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.violation is None


def play(plan: Plan) -> Outcome:
    return Run(plan).play()
