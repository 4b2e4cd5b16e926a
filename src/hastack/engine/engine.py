"""The engine: the imperative shell around :func:`hastack.policy.recovery.decide`.

Each tick: fold finished actions into the journal, hold the leader lease, observe (Nova's
services, probes, BMC power for suspect hosts, operator requests from the store, and whatever
the journal says the core needs: workloads to plan, evacuations to confirm, hosts waiting to
rejoin), decide, journal the decision, then run its actions on worker threads.  Every step is
written ``running`` *before* its side effect; every journal write is compare-and-set and guarded
by the lease (the fencing token), so a deposed controller can neither write nor act.

The same engine runs in real time (thread pools) and in virtual time (``inline=True``: actions
run synchronously inside the tick, for seeded scenario tests).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from hastack.clock import Clock
from hastack.domain.fencing import FenceAttempt
from hastack.domain.hosts import HostObservation, HostRecord, HostState, Reading, Signal
from hastack.domain.network import AgentInfo
from hastack.engine.audit import AuditEntry, AuditTrail
from hastack.engine.devices import FenceTopology
from hastack.engine.journal import Journal, Operation, OpState, StepState
from hastack.errors import (
    HastackError,
    LeadershipLost,
    RevisionConflict,
    StoreUnavailable,
    TransientError,
)
from hastack.policy import levers, netrecovery, recovery
from hastack.policy.detection import nova_reading
from hastack.policy.fencing import OperatorConfirmation
from hastack.ports.compute import ComputePort, ComputeService, EvacuationStatus, Workload
from hastack.ports.network import NetworkPort, RouterHealth
from hastack.ports.signals import Leadership, SignalSource
from hastack.ports.store import Lease, Store

log = logging.getLogger(__name__)

LEADER = "hastack-leader"
CONTROL = "/hastack/control/"  # operator requests: confirm/<host>, maintenance/<host>, ...
HA_CHECK_INTERVAL = 60.0  # how often every HA router's ha_state per agent is read


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    name: str
    tick: float = 1.0
    lease_ttl: float = 10.0
    fence_timeout: float = 10.0
    workers: int = 32  # evacuate/start/force-down calls in flight
    fence_workers: int = 8
    inline: bool = False  # virtual time: run actions inside the tick


class Reconfigure(Protocol):
    """The cluster-wide dynamic configuration (:class:`hastack.dynamic.DynamicSettings`): the
    store key of its document, and the settings, net settings and a line naming what changed
    that a document gives; raises ConfigError when the document is invalid."""

    key: str

    def apply(
        self, document: str | None
    ) -> tuple[recovery.Settings, netrecovery.NetSettings, str]: ...


@dataclasses.dataclass
class TickReport:
    at: float
    verdict: str
    events: list[recovery.Event]
    runs: int
    leader: bool
    elapsed: float


@dataclasses.dataclass(frozen=True)
class EngineView:
    """What this controller knows after its last tick, for the API's threads: immutable
    references published once per tick (the engine replaces, never edits, what they hold)."""

    at: float
    leading: bool
    verdict: str
    records: Mapping[str, HostRecord]
    ops: tuple[Operation, ...]
    settings: recovery.Settings
    snapshot: recovery.Snapshot | None  # the leader's last observation (None: standby)
    epoch: int | None
    readings: Mapping[str, Mapping[Signal, Reading]] = dataclasses.field(default_factory=dict)


class Engine:
    def __init__(  # noqa: PLR0917 (the composition root passes each port)
        self,
        settings: recovery.Settings,
        compute: ComputePort,
        signals: Sequence[SignalSource],
        fencing: FenceTopology,
        store: Store,
        clock: Clock,
        options: EngineOptions,
        *,
        hosts: Iterable[str] = (),
        domains: Mapping[str, Mapping[str, str]] | None = None,
        network: NetworkPort | None = None,
        net_settings: netrecovery.NetSettings | None = None,
        dynamic: Reconfigure | None = None,
    ) -> None:
        self.settings = settings
        self.dynamic = dynamic
        self._dynamic_revision = 0  # of the dynamic configuration applied (0: none stored)
        self.compute = compute
        self.network = network
        self.net_settings = net_settings or netrecovery.NetSettings()
        self._agents: dict[str, AgentInfo] = {}
        self._agents_ok = True
        self._anomalies: dict[str, str] = {}
        self._last_ha_check = -1e18
        self._ha_routers: set[str] = set()
        self._last_control: dict[str, Any] = {}
        self._last_snapshot: recovery.Snapshot | None = None
        # host -> the latest reading of each signal (signals are read at their own intervals,
        # so one tick's observation holds only some); each host's dict is replaced, not edited
        self._readings: dict[str, Mapping[Signal, Reading]] = {}
        self.signals = {s.signal: s for s in signals}
        self.fencing = fencing
        self.store = store
        self.journal = Journal(store)
        self.clock = clock
        self.options = options
        self.known_hosts = set(hosts)
        self.domains = dict(domains or {})
        self.records: dict[str, HostRecord] = {}
        self.ops: dict[str, Operation] = {}
        self.revisions: dict[str, int] = {}
        self.lease: Lease | None = None
        self.lease_since = 0.0  # when this controller took the current lease (its clock)
        self.audit = AuditTrail(store)
        self._holder_expires: float | None = None  # standby: when the leader's lease ends
        self.running: set[tuple[str, str]] = set()
        self.outcomes: queue.SimpleQueue[recovery.Outcome] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.listeners: list[Callable[[TickReport], None]] = []
        self.last_verdict = ""
        self.view = EngineView(0.0, False, "starting", {}, (), settings, None, None)
        self._last_read: dict[Signal, float] = {}
        self._statuses_read_at: float | None = None
        self._services: dict[str, ComputeService] = {}
        self._stop = threading.Event()
        self._loaded = False
        if options.inline:
            self._pool: concurrent.futures.Executor | None = None
            self._fence_pool: concurrent.futures.Executor | None = None
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(options.workers, "hastack-act")
            self._fence_pool = concurrent.futures.ThreadPoolExecutor(
                options.fence_workers, "hastack-fence"
            )

    # ------------------------------------------------------------ loop

    def run_forever(self) -> None:
        """Tick until :meth:`stop`; a finished action wakes the loop early.  The lease is
        renewed by its own thread, so a long tick (a big plan, a slow API) never loses it."""
        keeper = threading.Thread(target=self._keep_lease, name="hastack-lease", daemon=True)
        keeper.start()
        while not self._stop.is_set():
            self.tick()
            self.wake.wait(self._standby_delay())
            self.wake.clear()
        keeper.join(timeout=5)

    def _standby_delay(self) -> float:
        """A tick, but a follower whose leader's lease is about to end (it stopped renewing:
        a live leader keeps two thirds of its TTL) wakes at that moment and then polls every
        0.1 s, so that a takeover follows the store's expiry, not the next tick."""
        tick, ends = self.options.tick, self._holder_expires
        if self.lease is not None or ends is None:
            return tick
        left = ends - self.clock.now()
        return min(tick, left + 0.05) if left > 0 else min(tick, 0.1)

    def _keep_lease(self) -> None:
        while not self._stop.wait(self.options.lease_ttl / 3):
            lease = self.lease
            if lease is None:
                continue
            try:
                self.lease = self.store.renew(lease, self.options.lease_ttl)
            except LeadershipLost as exc:
                self._step_down(f"lease lost: {exc}")
            except HastackError as exc:
                log.warning("lease renewal failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def close(self) -> None:
        for pool in (self._pool, self._fence_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        for source in self.signals.values():
            close = getattr(source, "close", None)
            if callable(close):
                close()
        if self.lease is not None:
            with contextlib.suppress(HastackError):
                self.store.release(self.lease)

    def tick(self) -> TickReport:
        started = time.monotonic()
        now = self.clock.now()
        try:
            report = self._tick(now)
        except (StoreUnavailable, LeadershipLost, RevisionConflict) as exc:
            # Without the journal or the lease nothing may be done; forget what we knew and
            # reload from the store once it answers and we lead again.
            self._step_down(f"{type(exc).__name__}: {exc}")
            report = TickReport(now, f"not acting: {exc}", [], 0, False, 0.0)
        except Exception as exc:  # a bug must not stop the loop; it must not act blindly either
            log.exception("tick failed")
            self._step_down(f"tick failed: {exc!r}")
            report = TickReport(now, f"not acting: tick failed: {exc!r}", [], 0, False, 0.0)
        report.elapsed = time.monotonic() - started
        self._publish(report)
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:  # an observer's bug must not stop the loop
                log.exception("tick listener %r failed", listener)
        return report

    def _publish(self, report: TickReport) -> None:
        leading = report.leader and self.lease is not None
        self.view = EngineView(
            report.at,
            leading,
            report.verdict,
            dict(self.records) if leading else {},
            tuple(self.ops.values()) if leading else (),
            self.settings,
            self._last_snapshot if leading else None,
            self.lease.epoch if leading and self.lease is not None else None,
            dict(self._readings) if leading else {},
        )

    def _tick(self, now: float) -> TickReport:
        if not self._hold_lease():
            holder = self.store.current(LEADER)
            self._holder_expires = holder.expires_at if holder else None
            who = holder.holder if holder else "nobody"
            return TickReport(now, f"standby: {who} leads", [], 0, False, 0.0)
        self._follow_dynamic()
        if not self._loaded:
            self._load(now)
        self._drain(now)
        snapshot = self._observe(now)
        snapshot, pulled = self._pull_levers(now, snapshot)
        self._last_snapshot = snapshot
        ops = list(self.ops.values())
        decision = recovery.decide(snapshot, self.records, ops, set(self.running), self.settings)
        self.records = dict(decision.records)
        for op in decision.writes:
            self._write(op)
            if op.state != OpState.OPEN:
                self._consume_requests(op.subject)
        events = [*pulled, *decision.events]
        runs = list(decision.runs)
        verdict = decision.verdict
        if self.network is not None:
            net = self._network_pass(now, snapshot, decision)
            for op in net.writes:
                self._write(op)
            events += net.events
            runs += net.runs
            verdict += "; " + net.verdict
        for event in events:
            self._log_event(event)
        self._audit(now, events, verdict)
        self._start_all(runs, now)
        if self.options.inline:
            self._drain(now)
        self._forget_finished(now)
        if verdict != self.last_verdict:
            log.info("verdict: %s", verdict)
            self.last_verdict = verdict
        return TickReport(now, verdict, events, len(runs), True, 0)

    # ------------------------------------------------------------ network HA

    def _network_pass(
        self, now: float, snapshot: recovery.Snapshot, decision: recovery.Decision
    ) -> netrecovery.NetDecision:
        assert self.network is not None
        ops = list(self.ops.values())
        needs = netrecovery.reads_needed(ops, self.running)
        control = self._last_control
        rebalance = control.get("rebalance")
        ha_due = now - self._last_ha_check >= HA_CHECK_INTERVAL
        routers = networks = None
        health: Mapping[str, RouterHealth] = {}
        try:
            if needs.routers or rebalance is not None or ha_due:
                ha = set(needs.ha_states)
                if ha_due:
                    ha |= self._ha_routers
                routers = self.network.routers(ha_states=sorted(ha))
                self._ha_routers = {r.id for r in routers if r.ha}
                self._last_ha_check = now if ha_due else self._last_ha_check
            if needs.networks:
                networks = self.network.networks()
            if needs.health:
                health = self.network.router_health(sorted(needs.health))
        except HastackError as exc:
            log.warning("Neutron unreadable: %s", exc)
        power_off = frozenset(h for h, r in self.records.items() if Signal.BMC in r.lost_map())
        snap = netrecovery.NetSnapshot(
            now=now,
            agents=self._agents,
            agents_ok=self._agents_ok,
            routers=routers,
            networks=networks,
            health=health,
            host_states={h: r.state for h, r in decision.records.items()},
            power_off=power_off,
            paused=snapshot.paused,
            halted=decision.halted,
            cliff_ack=snapshot.cliff_ack,
            rebalance=rebalance,
        )
        net = netrecovery.decide_network(
            snap, ops, set(self.running), self.net_settings, self._anomalies
        )
        self._anomalies = dict(net.anomalies)
        if net.rebalance_taken:
            with contextlib.suppress(HastackError):
                self.store.delete(f"{CONTROL}rebalance")
        return net

    # ------------------------------------------------------------ leadership and journal

    def _hold_lease(self) -> bool:
        if self.lease is None:
            self.lease_since = self.clock.now()
            self.lease = self.store.acquire(LEADER, self.options.name, self.options.lease_ttl)
            if self.lease is not None:
                log.info("leading with epoch %d", self.lease.epoch)
                self._loaded = False
            return self.lease is not None
        self.lease = self.store.renew(self.lease, self.options.lease_ttl)
        return True

    def leadership(self) -> Leadership:
        """For the agent listener: whether this controller holds the lease right now, under
        which epoch, and since when (measured before asking: never later than the truth)."""
        lease = self.lease
        if lease is None or lease.expires_at <= self.clock.now():
            return Leadership(False)
        return Leadership(True, lease.epoch, self.lease_since)

    def _step_down(self, why: str) -> None:
        if self.lease is not None:
            log.warning("stepping down: %s", why)
        self.lease = None
        self._loaded = False

    def _follow_dynamic(self) -> None:
        """Apply the dynamic configuration when its revision changed (one read per tick).  An
        invalid document (written by hand) is refused once, loudly; the settings stay."""
        if self.dynamic is None:
            return
        entry = self.store.get(self.dynamic.key)
        revision = entry.revision if entry else 0
        if revision == self._dynamic_revision:
            return
        self._dynamic_revision = revision
        try:
            settings, net_settings, changed = self.dynamic.apply(entry.value if entry else None)
        except Exception as exc:  # a bad document must never stop recovery
            log.error(
                "dynamic configuration revision %d refused, settings unchanged: %s",
                revision,
                exc,
                exc_info=not isinstance(exc, HastackError),
            )
            return
        self.settings, self.net_settings = settings, net_settings
        for source in self.signals.values():
            if hasattr(source, "profile"):  # probes count failures against the profile
                source.profile = settings.profile
        log.info("dynamic configuration revision %d applied: %s", revision, changed)

    def _load(self, now: float) -> None:
        window = max((b.window for b in self.settings.guards.budgets), default=0.0)
        self.ops, self.revisions = {}, {}
        for op, revision in self.journal.operations():
            if op.state == OpState.OPEN or now - op.created <= window:
                self.ops[op.id] = op
                self.revisions[op.id] = revision
        self.running = set()
        self._loaded = True
        opened = sum(1 for op in self.ops.values() if op.state == OpState.OPEN)
        if opened:
            log.info("resuming %d open operation(s) from the journal", opened)

    def _write(self, op: Operation) -> None:
        assert self.lease is not None
        op.updated = self.clock.now()
        if op.id in self.revisions:
            self.revisions[op.id] = self.journal.save(op, self.revisions[op.id], self.lease)
        else:
            self.revisions[op.id] = self.journal.create(op, self.lease)
        self.ops[op.id] = op

    def _consume_requests(self, host: str) -> None:
        """An operator's confirmation or rejoin request is good for one recovery only."""
        for kind in ("confirm", "rejoin"):
            try:
                self.store.delete(f"{CONTROL}{kind}/{host}")
            except HastackError as exc:
                log.warning("could not clear the %s request of %s: %s", kind, host, exc)

    def _forget_finished(self, now: float) -> None:
        window = max((b.window for b in self.settings.guards.budgets), default=0.0)
        for op_id, op in list(self.ops.items()):
            if op.state != OpState.OPEN and now - op.created > window:
                del self.ops[op_id]
                self.revisions.pop(op_id, None)

    # ------------------------------------------------------------ observe

    def _observe(self, now: float) -> recovery.Snapshot:
        profile = self.settings.profile
        readings: dict[str, list[Reading]] = {}
        nova_ok, fresh = True, False
        services = self._services
        if self._due(Signal.NOVA, profile.nova_interval, now) or not services:
            try:
                services = {s.host: s for s in self.compute.services()}
                self._services, fresh = services, True
            except HastackError as exc:
                log.warning("Nova services unreadable: %s", exc)
                services, nova_ok = {}, False
                self._services = {}
        nodes, back = self._observe_agents(now, services, readings, nova_ok)
        hosts = self.known_hosts | set(services) | nodes
        for host in hosts if fresh else ():
            svc = services.get(host)
            if svc is not None:
                readings.setdefault(host, []).append(
                    nova_reading(svc.updated_at, svc.up and not svc.forced_down, now, profile)
                )
        probe = self.signals.get(Signal.PROBE)
        if probe is not None and self._due(Signal.PROBE, profile.probe_interval, now):
            for host, reading in probe.read(sorted(hosts), now).items():
                readings.setdefault(host, []).append(reading)
        bmc = self.signals.get(Signal.BMC)
        if bmc is not None and self._due(Signal.BMC, profile.bmc_interval, now):
            suspects = [
                h
                for h, r in self.records.items()
                if r.state in (HostState.SUSPECT, HostState.FAILED)
            ]
            if suspects:
                for host, reading in bmc.read(suspects, now).items():
                    readings.setdefault(host, []).append(reading)
        agent = self.signals.get(Signal.AGENT)
        if agent is not None:
            for host, reading in agent.read(sorted(hosts), now).items():
                readings.setdefault(host, []).append(reading)
        observations = {h: HostObservation(h, tuple(readings.get(h, ()))) for h in hosts}
        for host, latest in readings.items():
            self._readings[host] = {**self._readings.get(host, {}), **{r.signal: r for r in latest}}
        visible = sum(
            1 for h in hosts if h in services or any(r.lost is False for r in readings.get(h, ()))
        )
        control = self._last_control = self._control(now)
        ops = list(self.ops.values())
        workloads = self._workloads(recovery.workloads_needed(ops))
        statuses = self._evacuation_statuses(recovery.evacuations_to_check(ops, self.running), now)
        cleanup = self._cleanup(recovery.cleanup_to_check(ops), services, now)
        domains = {}
        for h in hosts:
            d = dict(self.domains.get(h, {}))
            segment = self.settings.segments.get(h)
            if segment is not None:
                d.setdefault("segment", segment.name)
            if h in services and services[h].zone:
                d.setdefault("az", services[h].zone)
            domains[h] = d
        return recovery.Snapshot(
            now=now,
            observations=observations,
            services=services,
            hosts_total=len(hosts),
            hosts_visible=visible if nova_ok or readings else 0,
            store_ok=True,
            paused=control["paused"],
            maintenance=frozenset(control["maintenance"]),
            confirmations=control["confirmations"],
            rejoin_requests=control["rejoin"],
            cliff_ack=control["cliff_ack"],
            workloads=workloads,
            evacuations=statuses,
            cleanup_pending=cleanup,
            domains=domains,
            network_nodes=frozenset(nodes),
            node_heartbeats=back,
        )

    def _observe_agents(
        self,
        now: float,
        services: Mapping[str, ComputeService],
        readings: dict[str, list[Reading]],
        nova_ok: bool,
    ) -> tuple[set[str], dict[str, float]]:
        """Neutron's agents: the network nodes (agent hosts without nova-compute), their
        NEUTRON readings (lost when every agent on the node is down), and the newest heartbeat
        of each node's agents that are up (a fenced node rejoins on one newer than its fence)."""
        if self.network is None:
            return set(), {}
        fresh = False
        if self._due(Signal.NEUTRON, self.settings.profile.nova_interval, now) or not self._agents:
            try:
                self._agents = {a.id: a for a in self.network.agents()}
                self._agents_ok = fresh = True
            except HastackError as exc:
                log.warning("Neutron agents unreadable: %s", exc)
                self._agents_ok = False
        if not nova_ok:
            return set(), {}  # without Nova's list no host can be told apart as a node
        by_host: dict[str, list[AgentInfo]] = {}
        for agent in self._agents.values():
            if agent.host not in services:
                by_host.setdefault(agent.host, []).append(agent)
        back: dict[str, float] = {}
        for host, agents in by_host.items():
            down = [a for a in agents if netrecovery.is_down(a, now, self.net_settings)]
            beats = [a.heartbeat_at for a in agents if a not in down and a.heartbeat_at]
            if beats:
                back[host] = max(beats)
            if not fresh or not self._agents_ok:
                continue
            if down and len(down) == len(agents):
                age = min(netrecovery.silent_for(a, now) for a in agents)
                reading = Reading(Signal.NEUTRON, True, now, f"all agents down ({age:.0f}s silent)")
            else:
                reading = Reading(Signal.NEUTRON, False, now, "agents heartbeat")
            readings.setdefault(host, []).append(reading)
        return set(by_host), back

    def _due(self, signal: Signal, interval: float, now: float) -> bool:
        last = self._last_read.get(signal)
        if last is not None and now - last < interval - 1e-6:
            return False
        self._last_read[signal] = now
        return True

    def _control(self, now: float) -> dict[str, Any]:
        """Operator requests, read from the store (written by the CLI or the API)."""
        out: dict[str, Any] = {
            "paused": False,
            "maintenance": [],
            "confirmations": {},
            "cliff_ack": None,
            "rejoin": {},
            "rebalance": None,
            "levers": {},  # operation id -> (retry | cancel, the request's body)
        }
        for entry in self.store.list(CONTROL):
            kind, _, host = entry.key.removeprefix(CONTROL).partition("/")
            try:
                body = json.loads(entry.value) if entry.value else {}
            except ValueError:
                log.warning("ignoring unreadable control entry %s", entry.key)
                continue
            if kind == "paused":
                out["paused"] = True
            elif kind == "rebalance":
                out["rebalance"] = float(body.get("at", now))
            elif kind == "cliff-ack":
                out["cliff_ack"] = float(body.get("at", now))
            elif kind == "maintenance" and host:
                out["maintenance"].append(host)
            elif kind == "rejoin" and host:
                out["rejoin"][host] = float(body.get("at", now))
            elif kind in ("retry", "cancel") and host:
                out["levers"][host] = (kind, body)
            elif kind == "confirm" and host:
                out["confirmations"][host] = OperatorConfirmation(
                    str(body.get("operator", "unknown")),
                    float(body.get("at", now)),
                    str(body.get("comment", "")),
                )
        return out

    def _workloads(self, hosts: set[str]) -> dict[str, Workload]:
        out = {}
        for host in sorted(hosts):
            try:
                out[host] = self.compute.workload(host)
            except HastackError as exc:
                log.warning("cannot read %s's workload: %s", host, exc)
        return out

    def _evacuation_statuses(
        self, wanted: list[tuple[str, str]], now: float
    ) -> dict[str, EvacuationStatus]:
        """Nova's word on every issued evacuation, read at most once a tick: a finished action
        wakes the loop, and while hundreds are issued the passes follow each other closely.
        An evacuation left out of a pass is one with no news (``decide`` waits on it)."""
        last = self._statuses_read_at
        if not wanted or (last is not None and now - last < self.options.tick - 1e-6):
            return {}
        self._statuses_read_at = now
        by_source: dict[str, list[str]] = {}
        for instance, source in wanted:
            by_source.setdefault(source, []).append(instance)
        out: dict[str, EvacuationStatus] = {}
        for source, instances in sorted(by_source.items()):
            try:
                out.update(self.compute.evacuation_statuses(source, instances))
            except HastackError as exc:
                log.warning("evacuations from %s unreadable: %s", source, exc)
        return out

    def _cleanup(
        self, hosts: list[str], services: Mapping[str, ComputeService], now: float
    ) -> dict[str, int]:
        out = {}
        for host in hosts:
            svc = services.get(host)
            if svc is None or svc.updated_at is None:
                continue
            if now - svc.updated_at > self.settings.profile.nova_stale_after:
                continue  # not back yet: no need to ask
            try:
                out[host] = len(self.compute.evacuations_pending_cleanup(host))
            except HastackError as exc:
                log.debug("cleanup of %s unreadable: %s", host, exc)
        return out

    # ------------------------------------------------------------ act

    def _start_all(self, runs: Sequence[recovery.Run], now: float) -> None:
        """Write every run's step ``running`` (one journal write per operation), then run."""
        fresh = [r for r in runs if r.op in self.ops and (r.op, r.step) not in self.running]
        marked: dict[str, Operation] = {}
        for run in fresh:
            op = marked.get(run.op) or self.ops[run.op]
            if op.kind in netrecovery.KINDS:
                marked[run.op] = netrecovery.mark_running(op, run, now)
            else:
                marked[run.op] = recovery.mark_running(op, run, now)
        for op in marked.values():
            self._write(op)  # write-ahead: a crash from here on is resumed from "running"
        epoch = self.lease.epoch if self.lease else -1
        for run in fresh:
            self.running.add((run.op, run.step))
            if self.options.inline:
                self.outcomes.put(self._execute(run, epoch))
                continue
            pool = self._fence_pool if run.action == "fence" else self._pool
            assert pool is not None
            pool.submit(self._execute_and_wake, run, epoch)

    def _execute_and_wake(self, run: recovery.Run, epoch: int) -> None:
        self.outcomes.put(self._execute(run, epoch))
        self.wake.set()

    def _drain(self, now: float) -> None:
        changed: dict[str, Operation] = {}
        while True:
            try:
                outcome = self.outcomes.get_nowait()
            except queue.Empty:
                break
            self.running.discard((outcome.run.op, outcome.run.step))
            op = changed.get(outcome.run.op) or self.ops.get(outcome.run.op)
            if op is None:
                continue
            if op.kind in netrecovery.KINDS:
                changed[op.id] = netrecovery.apply_outcome(op, outcome, self.net_settings, now)
            else:
                changed[op.id] = recovery.apply_outcome(op, outcome, self.settings, now)
        for op in changed.values():
            self._write(op)

    def _still_leader(self, epoch: int) -> bool:
        """The fencing token, checked right before every side effect."""
        lease = self.store.current(LEADER)
        return (
            lease is not None
            and lease.holder == self.options.name
            and lease.epoch == epoch
            and lease.expires_at > self.clock.now()
        )

    def _execute(self, run: recovery.Run, epoch: int) -> recovery.Outcome:
        try:
            if not self._still_leader(epoch):
                return recovery.Outcome(run, False, "leadership lost: not acting", transient=True)
            return self._act(run, epoch)
        except HastackError as exc:
            return recovery.Outcome(run, False, str(exc), transient=isinstance(exc, TransientError))
        except Exception as exc:  # a driver bug must not kill the engine
            log.exception("action %s on %s failed unexpectedly", run.action, run.step)
            return recovery.Outcome(run, False, f"unexpected error: {exc!r}")

    def _act(self, run: recovery.Run, epoch: int) -> recovery.Outcome:
        args = run.args
        if run.action == "fence":
            return self._fence(run, epoch)
        if run.action in (netrecovery.MOVE_ROUTER, netrecovery.MOVE_NETWORK):
            return self._move(run)
        op = self.ops.get(run.op)
        if op is None or recovery.proof_of(op) is None:
            return recovery.Outcome(run, False, "refused: no fence proof for the host")
        if run.action == "force-down":
            proof = recovery.proof_of(op)
            assert proof is not None
            reason = f"hastack: fenced ({proof.kind} by {proof.by}); recovery {op.id}"
            self.compute.force_down(args["host"], reason)
            return recovery.Outcome(run, True, "forced down and disabled in Nova")
        if run.action == "evacuate":
            return self._evacuate(run)
        if run.action == "start":
            self.compute.start(args["instance"])
            return recovery.Outcome(run, True, "started")
        if run.action == "rejoin":
            self.compute.enable(args["host"])
            return recovery.Outcome(run, True, "re-enabled in Nova")
        return recovery.Outcome(run, False, f"unknown action {run.action}")

    def _fence(self, run: recovery.Run, epoch: int) -> recovery.Outcome:
        host, level = run.args["host"], int(run.args["level"])
        attempts = []
        for name in run.args["devices"]:
            device = self.fencing.device(host, name)
            if device is None:
                attempts.append(
                    FenceAttempt(level, name, False, "device not configured", self.clock.now())
                )
                continue
            if not self._still_leader(epoch):
                break
            result = device.off(self.options.fence_timeout)
            attempts.append(FenceAttempt(level, name, result.ok, result.reason, self.clock.now()))
        ok = bool(attempts) and all(a.ok for a in attempts)
        return recovery.Outcome(
            run, ok, "; ".join(a.reason for a in attempts), attempts=tuple(attempts)
        )

    def _evacuate(self, run: recovery.Run) -> recovery.Outcome:
        args = run.args
        instance, host = args["instance"], args["host"]
        reset = bool(args.get("reset"))
        if args.get("check"):  # resumed or retried: check the world before repeating
            status = self.compute.evacuation_status(instance, host)
            if status.phase == "done":
                return recovery.Outcome(run, True, "", already=f"already on {status.host}")
            stale = args.get("abandoned") and status.destination == args["abandoned"]
            if status.phase == "running" and not stale:
                return recovery.Outcome(run, True, "", already="evacuation already under way")
            if status.host not in (None, host) and status.status:
                return recovery.Outcome(
                    run, False, f"no longer on {host} (Nova shows it on {status.host})"
                )
            reset = reset or status.status == "ERROR"
        if reset:
            self.compute.reset_state(instance, "active")
        self.compute.evacuate(instance, args.get("target"))
        where = args.get("target") or "a host Nova's scheduler chooses"
        return recovery.Outcome(
            run, True, f"evacuation to {where} accepted", issued=True, at=self.clock.now()
        )

    def _move(self, run: recovery.Run) -> recovery.Outcome:
        """Remove then add one router or network binding (both calls idempotent, so a resumed
        step simply runs again).  A legacy or SNAT move off a node needs its proof."""
        args = run.args
        assert self.network is not None
        source, target = args.get("source"), args.get("target")
        if run.action == netrecovery.MOVE_ROUTER:
            needs_proof = args.get("mode") in ("legacy", "snat") and not args.get("rebalance")
            if needs_proof and not args.get("proof"):
                return recovery.Outcome(run, False, "refused: the source node is not proven off")
            if source:
                self.network.remove_router(source, args["router"])
            if target:
                self.network.add_router(target, args["router"])
            return recovery.Outcome(run, True, f"moved from {source} to {target}: verifying")
        if source:
            self.network.remove_network(source, args["network"])
        if target:
            self.network.add_network(target, args["network"])
        what = f"added to {target}" if target else "dead binding removed"
        return recovery.Outcome(run, True, what)

    # ------------------------------------------------------------ audit

    def _pull_levers(
        self, now: float, snapshot: recovery.Snapshot
    ) -> tuple[recovery.Snapshot, list[recovery.Event]]:
        """Operators' retry and cancel requests (policy.levers), each journaled, then cleared.
        A cancelled recovery's host goes to maintenance first, in the store and in this pass's
        snapshot, or detection would open a new recovery at once."""
        events: list[recovery.Event] = []
        for op_id, (kind, body) in sorted(self._last_control.get("levers", {}).items()):
            op = self.ops.get(op_id)
            by = f"operator {body.get('operator', '?')}"
            comment = str(body.get("comment", ""))
            try:
                if op is None:
                    raise levers.LeverRefused(f"{op_id} is not a current operation")
                if kind == "cancel":
                    changed = levers.cancel(op, by, comment, now)
                    note = {"operator": body.get("operator", "?"), "at": now}
                    note["comment"] = f"{op_id} cancelled"
                    self.store.put(f"{CONTROL}maintenance/{op.subject}", json.dumps(note))
                    snapshot = dataclasses.replace(
                        snapshot, maintenance=snapshot.maintenance | {op.subject}
                    )
                else:
                    changed = levers.retry(op, by, comment, now)
                self._write(changed)
                message = changed.log[-1].partition(" ")[2]
                events.append(recovery.Event(op.subject, f"{op_id}: {message}"))
            except levers.LeverRefused as exc:
                subject = op.subject if op is not None else "cluster"
                events.append(recovery.Event(subject, f"{kind} by {by} refused: {exc}"))
            self.store.delete(f"{CONTROL}{kind}/{op_id}")
        return snapshot, events

    def _log_event(self, event: recovery.Event) -> None:
        log.info("%s: %s", event.subject, event.message)

    def _audit(self, now: float, events: Sequence[recovery.Event], verdict: str) -> None:
        """This tick's decisions, and its verdict when it changed, into the audit trail
        (written under the lease, before any action of this tick starts)."""
        assert self.lease is not None
        by = f"{self.options.name} (epoch {self.lease.epoch})"
        entries = [AuditEntry(now, e.subject, e.message, by) for e in events]
        if verdict != self.last_verdict:
            entries.append(AuditEntry(now, "cluster", verdict, by, "verdict"))
        self.audit.record(entries, self.lease)
        self.audit.prune(now, self.lease)


def summarize(ops: Iterable[Operation]) -> list[dict[str, Any]]:
    """Operations as plain rows (for the CLI): ``actions`` counts a host recovery's
    evacuations, a network operation's router and network moves."""
    rows = []
    for op in ops:
        if op.kind in netrecovery.KINDS:
            moves = [s for s in op.steps if s.kind in (netrecovery.ROUTER, netrecovery.NETWORK)]
            plan = op.step(netrecovery.PLAN)
            host = str(plan.params.get("host", op.subject)) if plan else op.subject
            rows.append(
                {
                    "id": op.id,
                    "kind": op.kind,
                    "host": host,
                    "state": op.state.value,
                    "host_state": "",
                    "actions": len(moves),
                    "done": sum(1 for s in moves if s.state == StepState.DONE),
                    "reason": op.log[-1].partition(" ")[2] if op.log else "",
                }
            )
            continue
        evacs = [s for s in op.steps if s.kind == recovery.EVACUATE]
        state, reason = recovery.host_state(op)
        rows.append(
            {
                "id": op.id,
                "kind": op.kind,
                "host": op.subject,
                "state": op.state.value,
                "host_state": state.value,
                "actions": len(evacs),
                "done": sum(1 for s in evacs if s.state == StepState.DONE),
                "reason": reason,
            }
        )
    return rows
