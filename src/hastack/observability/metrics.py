"""Prometheus metrics of one controller, fed by the engine after every tick.

:class:`Metrics` is an engine listener: ``engine.listeners.append(metrics.listener)``.  It runs
on the engine's thread right after each tick, so it reads ``engine.records``, ``engine.ops`` and
``engine.lease`` without locks; :meth:`Metrics.render` runs on the API's threads and only reads
prometheus_client's own thread-safe values and one snapshot replaced whole by each tick.

**What a standby exports.**  Only the leader knows the cloud's current state: a standby's
records and operations are whatever it last saw as a leader.  So ``hastack_hosts``,
``hastack_operations_open`` and ``hastack_epoch`` are exported only while this controller
leads (absent, not stale, on a standby): ``sum(hastack_hosts)`` over every controller is right,
and ``absent(hastack_operations_open)`` alerts when no controller leads.

**Counting transitions, not history.**  A new leader loads the journal's operations, many of
them long finished by an earlier leader (or by this one, before a store outage deposed it).
Counters and histograms must record what happened once, on the controller that saw it happen.
The rule: a step's (or operation's) outcome is recorded the first time it is seen finished
*and* its journal timestamp (``Step.updated``, ``Operation.created`` / ``updated``, stamped
with the tick's ``now``) is not older than the tick in which this controller took the lease.
Everything a leader writes, including what it finishes in its very first tick, carries that
tick's time or later; everything loaded from the journal carries an earlier one.  This needs
no memory across a leadership change (the memory is dropped at every change), and a controller
deposed and re-elected never counts its own earlier work twice.  The cost: controllers' clocks
must agree to within the time between two leaders' writes (the lease TTL, when a leader dies).

Each evacuation or router/network move is counted once, with the first outcome it reaches (an
operator's later retry of a failed step does not count it again).  Memory is bounded by the
engine's: an operation that leaves ``engine.ops`` is forgotten.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from hastack.domain.fencing import ProofKind
from hastack.domain.hosts import HostRecord, HostState
from hastack.engine.engine import TickReport
from hastack.engine.journal import Operation, OpState, Step, StepState
from hastack.policy import netrecovery, recovery
from hastack.ports.store import Lease

log = logging.getLogger(__name__)

# From a few seconds (a fast detection profile, a BMC power-off) to an hour (a big evacuation).
SECONDS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
           900.0, 1800.0, 3600.0)  # fmt: skip
# A tick reads Nova and the store: milliseconds when healthy, seconds when an API is slow.
TICK_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REFUSED = "fencing refused: "
GUARD_REASONS = ("tick_cap", "budget", "cliff", "visibility", "store", "paused", "other")
EVACUATION_OUTCOMES = ("done", "failed", "unplaceable", "skipped")
MOVE_OUTCOMES = ("done", "failed", "skipped")
MOVE_KINDS = (netrecovery.ROUTER, netrecovery.NETWORK)
PROOF_KINDS = (*(k.value for k in ProofKind), "other")
RECOVERY_KINDS = (recovery.RECOVER, *netrecovery.KINDS)


def guard_reason(why: str) -> str:
    """A guard's refusal (the text after ``fencing refused:``, policy/guards.py) as one of
    :data:`GUARD_REASONS`: a label of a handful of values, whatever numbers the text holds."""
    if why.startswith("per-tick cap"):
        return "tick_cap"
    if "budget" in why:
        return "budget"
    if "cliff" in why:
        return "cliff"
    if "partitioned" in why or "controller sees" in why:
        return "visibility"
    if "store" in why:
        return "store"
    if "paused" in why:
        return "paused"
    return "other"


def _step_outcome(step: Step) -> str:
    if step.state == StepState.FAILED and step.params.get("skip") == "unplaceable":
        return "unplaceable"
    return step.state.value


class MetricsSource(Protocol):
    """What the metrics read of the engine (:class:`hastack.engine.engine.Engine`)."""

    @property
    def records(self) -> Mapping[str, HostRecord]: ...

    @property
    def ops(self) -> Mapping[str, Operation]: ...

    @property
    def lease(self) -> Lease | None: ...


@dataclasses.dataclass(frozen=True)
class _Current:
    """The leader-only gauges, as of the last tick (replaced whole: readers never lock)."""

    leading: bool = False
    epoch: int | None = None
    hosts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    operations_open: int = 0


class _CurrentCollector:
    def __init__(self) -> None:
        self.current = _Current()

    def describe(self) -> Iterable[Metric]:
        return self._families(_Current(True, 0))

    def collect(self) -> Iterable[Metric]:
        return self._families(self.current)

    @staticmethod
    def _families(now: _Current) -> list[Metric]:
        out: list[Metric] = [
            GaugeMetricFamily(
                "hastack_leader",
                "1 when this controller holds the leader lease",
                value=1 if now.leading else 0,
            )
        ]
        if now.epoch is not None:
            out.append(
                GaugeMetricFamily(
                    "hastack_epoch", "the leader lease's epoch (fencing token)", value=now.epoch
                )
            )
        if now.leading:
            hosts = GaugeMetricFamily(
                "hastack_hosts", "hosts by lifecycle state (leader only)", labels=["state"]
            )
            for state in HostState:
                hosts.add_metric([state.value], now.hosts.get(state.value, 0))
            out.append(hosts)
            out.append(
                GaugeMetricFamily(
                    "hastack_operations_open",
                    "recoveries and network operations in progress (leader only)",
                    value=now.operations_open,
                )
            )
        return out


@dataclasses.dataclass
class _Seen:
    """What has been recorded of one operation."""

    ended: set[str] = dataclasses.field(default_factory=set)  # step ids counted (or history)
    fenced: bool = False
    recovered: bool = False


class Metrics:
    """A controller's metrics, in their own registry (never prometheus_client's global one)."""

    def __init__(self, engine: MetricsSource) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        self._current = _CurrentCollector()
        self.registry.register(self._current)
        self._declare(self.registry)
        self._leading = False
        self._epoch: int | None = None
        self._since = 0.0  # when this controller's current leadership began (its first tick)
        self._seen: dict[str, _Seen] = {}
        self._onsets: dict[str, float] = {}  # host -> its earliest lost signal, last tick

    def _declare(self, registry: CollectorRegistry) -> None:
        def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=SECONDS)

        self.leader_changes = Counter(
            "hastack_leader_changes", "this controller gaining or losing the lease", [],
            registry=registry,
        )  # fmt: skip
        self.tick_seconds = Histogram(
            "hastack_tick_seconds", "duration of one engine tick", registry=registry,
            buckets=TICK_SECONDS,
        )  # fmt: skip
        self.detection_seconds = histogram(
            "hastack_detection_seconds", "a host's first lost signal to its recovery opening"
        )
        self.fence_seconds = histogram(
            "hastack_fence_seconds", "a recovery opening to its fence proof"
        )
        self.recovery_seconds = histogram(
            "hastack_recovery_seconds",
            "an operation opening to its work done: recover-host, every instance's evacuation "
            "ended (the host's rejoin is not waited for); network operations, finished done",
            ("kind",),
        )
        self.evacuations = Counter(
            "hastack_evacuations", "evacuation steps ended, by outcome", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.network_moves = Counter(
            "hastack_network_moves",
            "router (L3) and network (DHCP) moves ended, by outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.guard_refusals = Counter(
            "hastack_guard_refusals", "fencing refused by a guard, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.fence_proofs = Counter(
            "hastack_fence_proofs", "fence proofs obtained, by kind", ["kind"], registry=registry
        )
        # every label value exported from the start, at zero: rate() and alerts need the series
        for outcome in EVACUATION_OUTCOMES:
            self.evacuations.labels(outcome)
        for kind in MOVE_KINDS:
            for outcome in MOVE_OUTCOMES:
                self.network_moves.labels(kind, outcome)
        for reason in GUARD_REASONS:
            self.guard_refusals.labels(reason)
        for proof in PROOF_KINDS:
            self.fence_proofs.labels(proof)
        for kind in RECOVERY_KINDS:
            self.recovery_seconds.labels(kind)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # ------------------------------------------------------------ after each tick

    def listener(self, report: TickReport) -> None:
        """Record one tick.  Never raises: the engine calls listeners outside its own guard,
        and a metrics bug must not stop recoveries."""
        try:
            self._record(report)
        except Exception:
            log.exception("metrics: tick at %.3f not recorded", report.at)

    def _record(self, report: TickReport) -> None:
        self.tick_seconds.observe(report.elapsed)
        lease = self.engine.lease
        epoch = lease.epoch if report.leader and lease is not None else None
        self._leadership(report, epoch)
        if not report.leader:
            self._current.current = _Current()
            return
        for event in report.events:
            if event.message.startswith(REFUSED):
                self.guard_refusals.labels(guard_reason(event.message[len(REFUSED) :])).inc()
        ops, records = self.engine.ops, self.engine.records
        self._follow(ops, records)
        hosts: dict[str, int] = {}
        for record in records.values():
            hosts[record.state.value] = hosts.get(record.state.value, 0) + 1
        opened = sum(1 for op in ops.values() if op.state == OpState.OPEN)
        self._current.current = _Current(True, self._epoch, hosts, opened)

    def _leadership(self, report: TickReport, epoch: int | None) -> None:
        """Count gains and losses of the lease; at each, drop what was remembered and start
        counting from this tick.  A new epoch between two leading ticks is a loss and a gain
        (the lease expired and was taken again: the journal was reloaded)."""
        changes = int(report.leader != self._leading)
        if report.leader and self._leading and None not in (epoch, self._epoch):
            changes = 2 * int(epoch != self._epoch)
        if changes:
            self.leader_changes.inc(changes)
            self._since = report.at
            self._seen, self._onsets = {}, {}
        self._leading = report.leader
        if not report.leader or epoch is not None:
            self._epoch = epoch

    def _follow(self, ops: Mapping[str, Operation], records: Mapping[str, HostRecord]) -> None:
        # A recovery opens in the tick that also moves its host to "fencing", which resets the
        # host's record (and its lost_since): the onset is the one the previous tick saw.
        onsets = {h: min(t for _, t in r.lost_since) for h, r in records.items() if r.lost_since}
        for op in ops.values():
            seen = self._seen.get(op.id)
            if seen is None:
                seen = self._seen[op.id] = _Seen()
                onset = self._onsets.get(op.subject, onsets.get(op.subject))
                fresh = op.created >= self._since
                if op.kind == recovery.RECOVER and fresh and onset is not None:
                    self.detection_seconds.observe(max(0.0, op.created - onset))
            if op.kind == recovery.RECOVER:
                self._follow_recovery(op, seen)
            elif op.kind in netrecovery.KINDS:
                self._follow_network(op, seen)
        self._onsets = onsets
        for op_id in [i for i in self._seen if i not in ops]:
            del self._seen[op_id]

    def _follow_recovery(self, op: Operation, seen: _Seen) -> None:
        for step in op.steps:
            if step.id == recovery.FENCE and step.state == StepState.DONE and not seen.fenced:
                seen.fenced = True
                if step.updated >= self._since:
                    self.fence_seconds.observe(max(0.0, step.updated - op.created))
                    proof = step.params.get("proof")
                    kind = proof.get("kind") if isinstance(proof, dict) else None
                    self.fence_proofs.labels(kind if kind in PROOF_KINDS else "other").inc()
            elif step.kind == recovery.EVACUATE and self._ended(step, seen):
                self.evacuations.labels(_step_outcome(step)).inc()
        if not seen.recovered and recovery.host_state(op)[0] == HostState.RECOVERED:
            seen.recovered = True
            # the last step of the work to end: an evacuation, or the fence of a network node
            end = max(s.updated for s in op.steps if s.id != recovery.REJOIN)
            if end >= self._since:
                self.recovery_seconds.labels(op.kind).observe(max(0.0, end - op.created))

    def _follow_network(self, op: Operation, seen: _Seen) -> None:
        for step in op.steps:
            if step.kind in MOVE_KINDS and self._ended(step, seen):
                self.network_moves.labels(step.kind, _step_outcome(step)).inc()
        if not seen.recovered and op.state == OpState.DONE:
            seen.recovered = True
            if op.updated >= self._since:
                self.recovery_seconds.labels(op.kind).observe(max(0.0, op.updated - op.created))

    def _ended(self, step: Step, seen: _Seen) -> bool:
        """Whether ``step`` has just ended under this leadership (True once per step)."""
        if step.state not in recovery.TERMINAL or step.id in seen.ended:
            return False
        seen.ended.add(step.id)
        return step.updated >= self._since
