"""Prometheus metrics (hastack.observability.metrics): the real engine in virtual time over the
in-process simulator, its exposition parsed back; and a small stand-in engine holding real
journal objects, for the counting rules around leadership changes."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hastack.domain.fencing import ProofKind
from hastack.domain.hosts import HostRecord, HostState, Signal
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.engine import Engine, EngineOptions, TickReport
from hastack.engine.journal import Operation, OpState, Step, StepState
from hastack.observability.metrics import GUARD_REASONS, Metrics, guard_reason
from hastack.policy import netrecovery, recovery
from hastack.policy.guards import Budget, GuardInput, GuardPolicy, check
from hastack.ports.store import Lease
from hastack.sim.build import CloudSpec
from hastack.sim.neutron import NeutronConfig
from hastack.sim.scenario import Fault, Scenario, ScenarioSpec, SimProbe
from hastack.sim.world import SimConfig

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(m: Metrics) -> Samples:
    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def attach(engine: Engine) -> Metrics:
    m = Metrics(engine)
    engine.listeners.append(m.listener)
    return m


def recovery_op(s: Scenario, host: str) -> Operation:
    (op,) = [o for o in s.operations() if o.kind == recovery.RECOVER and o.subject == host]
    return op


def evacuations(op: Operation, state: StepState) -> list[Step]:
    return [st for st in op.steps if st.kind == recovery.EVACUATE and st.state == state]


# ---------------------------------------------------------------- one leader, one power loss


def test_a_power_loss_is_measured_from_first_lost_signal_to_instances_recovered() -> None:
    spec = ScenarioSpec(cloud=CloudSpec(hosts=6, instances=20, seed=2),
                        faults=[Fault(5, "compute03", "power")])  # fmt: skip
    with Scenario(spec) as s:
        m = attach(s.engine)
        fault_at = s.start + 5
        assert s.run(300, until=lambda sc: sc.state_of("compute03") == "recovered")
        ticks = round(s.elapsed / spec.tick)  # one tick per step
        op = recovery_op(s, "compute03")
        epoch = s.engine.lease.epoch if s.engine.lease else None
    got = scrape(m)
    fence = op.step(recovery.FENCE)
    assert fence is not None and fence.state == StepState.DONE
    done = evacuations(op, StepState.DONE)
    assert done, "the host had instances to evacuate"

    assert get(got, "hastack_leader") == 1
    assert get(got, "hastack_epoch") == epoch
    assert get(got, "hastack_leader_changes_total") == 1
    assert get(got, "hastack_tick_seconds_count") == ticks
    assert get(got, "hastack_hosts", state="recovered") == 1
    assert get(got, "hastack_hosts", state="ok") == 5
    assert {get(got, "hastack_hosts", state=st.value) is not None for st in HostState} == {True}
    assert get(got, "hastack_operations_open") == 1  # waiting for the host to rejoin

    # detection: the first lost probe came after the power loss, and two signals had to stay
    # lost for the profile's confirm_after before the recovery opened
    detection = get(got, "hastack_detection_seconds_sum")
    assert get(got, "hastack_detection_seconds_count") == 1 and detection is not None
    profile = s.settings.profile
    assert profile.confirm_after <= detection <= op.created - fault_at
    assert get(got, "hastack_fence_seconds_count") == 1
    assert get(got, "hastack_fence_seconds_sum") == fence.updated - op.created
    assert get(got, "hastack_fence_proofs_total", kind=ProofKind.POWER_OFF.value) == 1
    last = max(st.updated for st in done)
    assert get(got, "hastack_recovery_seconds_count", kind=recovery.RECOVER) == 1
    assert get(got, "hastack_recovery_seconds_sum", kind=recovery.RECOVER) == last - op.created
    assert get(got, "hastack_evacuations_total", outcome="done") == len(done)
    for outcome in ("failed", "unplaceable", "skipped"):
        assert get(got, "hastack_evacuations_total", outcome=outcome) == 0
    assert {get(got, "hastack_guard_refusals_total", reason=r) for r in GUARD_REASONS} == {0}


# ---------------------------------------------------------------- leadership changes


def standby_engine(s: Scenario, name: str) -> tuple[Engine, SqliteStore]:
    """A second controller over the scenario's journal, wired as the scenario wires its own."""
    store = SqliteStore(s.store_path, s.clock)
    engine = Engine(
        s.settings,
        s.compute,
        [SimProbe(s.world, s.settings.profile)],
        s.topology,
        store,
        s.clock,
        EngineOptions(name, tick=s.spec.tick, inline=True),
        hosts=s.world.hosts,
    )
    return engine, store


def test_a_takeover_mid_recovery_counts_each_evacuation_on_exactly_one_controller() -> None:
    """controller-1 fences and evacuates one instance at a time, then dies; controller-2, a
    standby until then, takes the lease, loads the journal and finishes.  Neither counts what
    the other did: their sums are the journal's."""
    spec = ScenarioSpec(cloud=CloudSpec(hosts=6, instances=30, seed=3), max_parallel=1,
                        faults=[Fault(5, "compute02", "power")])  # fmt: skip
    with Scenario(spec) as s:
        first = s.engine
        m1 = attach(first)
        second, store = standby_engine(s, "controller-2")
        m2 = attach(second)
        try:

            def one_evacuated(sc: Scenario) -> bool:
                second.tick()
                ops = [o for o in sc.operations() if o.subject == "compute02"]
                return bool(ops) and len(evacuations(ops[0], StepState.DONE)) == 1

            assert s.run(120, until=one_evacuated), "\n".join(s.history)
            standby = scrape(m2)
            assert get(standby, "hastack_leader") == 0
            assert get(standby, "hastack_leader_changes_total") == 0
            for absent in ("hastack_epoch", "hastack_operations_open"):
                assert get(standby, absent) is None, absent
            assert get(standby, "hastack_hosts", state="ok") is None
            first_epoch = get(scrape(m1), "hastack_epoch")

            for _ in range(60):  # controller-1 has died: its lease runs out
                s.clock.advance(spec.tick)
                if second.tick().leader:
                    break
            for _ in range(120):
                record = second.records.get("compute02")
                if record is not None and record.state == HostState.RECOVERED:
                    break
                s.clock.advance(spec.tick)
                report = second.tick()
                assert report.leader, report.verdict
            assert second.lease is not None
            second_epoch = second.lease.epoch
            op = recovery_op(s, "compute02")
            assert recovery.host_state(op)[0] == HostState.RECOVERED
            # the old leader wakes up: its renewal fails and it reports itself deposed
            assert not first.tick().leader
        finally:
            second.close()
            store.close()
    one, two = scrape(m1), scrape(m2)
    done = len(evacuations(op, StepState.DONE))
    assert done >= 2
    assert get(one, "hastack_evacuations_total", outcome="done") == 1
    assert get(two, "hastack_evacuations_total", outcome="done") == done - 1
    assert get(one, "hastack_leader_changes_total") == 2  # gained, then lost
    assert get(one, "hastack_leader") == 0 and get(one, "hastack_epoch") is None
    assert get(two, "hastack_leader_changes_total") == 1
    assert get(two, "hastack_leader") == 1
    assert get(two, "hastack_epoch") == second_epoch != first_epoch
    assert get(two, "hastack_hosts", state="recovered") == 1
    # detected and fenced under controller-1 only; the recovery finished under controller-2
    for name in ("hastack_detection_seconds_count", "hastack_fence_seconds_count"):
        assert (get(one, name), get(two, name)) == (1, 0), name
    kind = ProofKind.POWER_OFF.value
    assert get(one, "hastack_fence_proofs_total", kind=kind) == 1
    assert get(two, "hastack_fence_proofs_total", kind=kind) == 0
    count = "hastack_recovery_seconds_count"
    assert (get(one, count, kind=recovery.RECOVER), get(two, count, kind=recovery.RECOVER)) == (
        0,
        1,
    )


# ---------------------------------------------------------------- guards


@pytest.mark.parametrize(
    ("guards", "reason", "text"),
    [
        # two of ten hosts at once: the default cliff threshold
        (GuardPolicy(), "cliff", "halted: cliff"),
        (
            GuardPolicy(max_fences_per_tick=1, cliff_hosts=50, cliff_percent=100.0),
            "tick_cap",
            "per-tick cap reached",
        ),
    ],
)
def test_guard_refusals_are_counted_by_reason(guards: GuardPolicy, reason: str, text: str) -> None:
    faults = [Fault(5, "compute02", "power"), Fault(5, "compute03", "power")]
    spec = ScenarioSpec(cloud=CloudSpec(hosts=10, instances=20, seed=1), guards=guards,
                        faults=faults)  # fmt: skip
    refusals: list[str] = []

    def collect(report: TickReport) -> None:
        refusals.extend(e.message for e in report.events if e.message.startswith("fencing refused"))

    with Scenario(spec) as s:
        m = attach(s.engine)
        s.engine.listeners.append(collect)
        s.run(30)
    got = scrape(m)
    expected = [r for r in refusals if r.startswith(f"fencing refused: {text}")]
    assert expected, refusals
    assert get(got, "hastack_guard_refusals_total", reason=reason) == len(expected)
    counted = [get(got, "hastack_guard_refusals_total", reason=r) for r in GUARD_REASONS]
    assert sum(c or 0 for c in counted) == len(refusals)


def test_every_refusal_the_guards_can_give_has_its_own_label() -> None:
    def refused(policy: GuardPolicy, **changes: object) -> str:
        data = GuardInput(
            candidates=["h1", "h2"],
            domains={"h1": {"az": "az1"}, "h2": {}},
            domain_sizes={("az", "az1"): 10},
            fence_starts=[],
            lost_onsets=[("h1", 0.0)],
            hosts_total=10,
            hosts_visible=10,
            store_ok=True,
            now=100.0,
        )
        decision = check(policy, dataclasses.replace(data, **changes))  # type: ignore[arg-type]
        assert decision.refused, decision
        return decision.refused[-1][1]

    plain = GuardPolicy(budgets=(), cliff_hosts=50, cliff_percent=100.0)
    assert guard_reason(refused(plain, store_ok=False)) == "store"
    assert guard_reason(refused(plain, hosts_visible=2)) == "visibility"
    assert guard_reason(refused(GuardPolicy(), lost_onsets=[("h1", 99.0), ("h2", 99.5)])) == (
        "cliff"
    )
    capped = dataclasses.replace(plain, max_fences_per_tick=1)
    assert guard_reason(refused(capped)) == "tick_cap"
    spent = dataclasses.replace(plain, budgets=(Budget("cloud", 0, 100.0, 600.0),))
    assert guard_reason(refused(spent)) == "budget"
    no_az = dataclasses.replace(plain, budgets=(Budget("az", 5, 100.0, 600.0),))
    assert guard_reason(refused(no_az)) == "budget"  # h2 is in no az: no budget applies
    assert guard_reason("paused by an operator") == "paused"
    assert guard_reason("something new") == "other"


# ---------------------------------------------------------------- network HA

NET_TIMING = SimConfig(
    report_interval=2.0,
    service_down_time=6.0,
    neutron=NeutronConfig(report_interval=2.0, agent_down_time=6.0, port_activate_seconds=1.0),
)


def test_router_and_network_moves_of_a_lost_network_node_are_counted() -> None:
    cloud = CloudSpec(hosts=4, instances=8, seed=1, network_nodes=4, routers=24, networks=12)
    spec = ScenarioSpec(cloud=cloud, timing=NET_TIMING, faults=[Fault(5, "network01", "power")])

    def finished(sc: Scenario) -> bool:
        ops = [o for o in sc.operations() if o.kind in netrecovery.KINDS]
        return bool(ops) and all(o.state != OpState.OPEN for o in ops)

    with Scenario(spec) as s:
        m = attach(s.engine)
        assert s.run(120, until=finished), "\n".join(s.history[-30:])
        ops = [o for o in s.operations() if o.kind in netrecovery.KINDS]
    got = scrape(m)
    for kind in (netrecovery.ROUTER, netrecovery.NETWORK):
        for state in (StepState.DONE, StepState.FAILED, StepState.SKIPPED):
            steps = [st for o in ops for st in o.steps if st.kind == kind and st.state == state]
            counted = get(got, "hastack_network_moves_total", kind=kind, outcome=state.value)
            assert counted == len(steps), (kind, state)
    assert get(got, "hastack_network_moves_total", kind="router", outcome="done")
    agent_ops = [o for o in ops if o.state == OpState.DONE]
    count = get(got, "hastack_recovery_seconds_count", kind=netrecovery.RECOVER_AGENT)
    assert count == len([o for o in agent_ops if o.kind == netrecovery.RECOVER_AGENT]) > 0
    # the node itself was fenced (its routers needed the proof): that recovery is done at once
    assert get(got, "hastack_fence_proofs_total", kind=ProofKind.POWER_OFF.value) == 1
    assert get(got, "hastack_recovery_seconds_count", kind=recovery.RECOVER) == 1


# ---------------------------------------------------------------- the counting rules, step by step


@dataclasses.dataclass
class Journaled:
    """A stand-in for the engine's memory: real records and operations, a lease."""

    records: Mapping[str, HostRecord] = dataclasses.field(default_factory=dict)
    ops: Mapping[str, Operation] = dataclasses.field(default_factory=dict)
    lease: Lease | None = None


def lead(engine: Journaled | Broken, epoch: int, at: float) -> TickReport:
    engine.lease = Lease("hastack-leader", "ctl", epoch, at + 10)
    return TickReport(at, "leading", [], 0, True, 0.01)


def evac(n: int, state: StepState, at: float, **params: object) -> Step:
    return Step(f"evacuate:vm{n}", recovery.EVACUATE, dict(params), state, 0, "", at)


def test_outcomes_are_counted_once_as_they_happen_and_history_never() -> None:
    engine = Journaled()
    m = Metrics(engine)
    old = Operation("old", recovery.RECOVER, "h0", 10.0, OpState.DONE, 20.0,
                    steps=[evac(0, StepState.DONE, 20.0)])  # fmt: skip
    op = Operation("op", recovery.RECOVER, "h1", 50.0, steps=[
        Step(recovery.FENCE, "fence", {}, StepState.DONE, 0, "", 99.0),
        evac(1, StepState.RUNNING, 99.0), evac(2, StepState.RUNNING, 99.0),
        evac(3, StepState.PENDING, 99.0), evac(4, StepState.PENDING, 99.0),
    ])  # fmt: skip
    engine.ops = {"old": old, "op": op}
    m.listener(lead(engine, 7, 100.0))  # takes over: both loaded from the journal
    op.steps[1] = evac(1, StepState.DONE, 100.0)  # ended in the takeover tick: counted
    m.listener(lead(engine, 7, 100.0))
    op.steps[2] = evac(2, StepState.FAILED, 101.0)
    op.steps[3] = evac(3, StepState.FAILED, 101.0, skip="unplaceable")
    op.steps[4] = evac(4, StepState.SKIPPED, 101.0, skip="refused")
    for at in (101.0, 102.0, 103.0):  # reported again and again: counted once
        m.listener(lead(engine, 7, at))
    got = scrape(m)
    for outcome in ("done", "failed", "unplaceable", "skipped"):
        assert get(got, "hastack_evacuations_total", outcome=outcome) == 1, outcome
    assert get(got, "hastack_fence_seconds_count") == 0  # proven before this leader
    assert get(got, "hastack_recovery_seconds_count", kind=recovery.RECOVER) == 0  # no fence yet
    assert get(got, "hastack_epoch") == 7 and get(got, "hastack_operations_open") == 1

    # the same controller loses the lease between two ticks and takes it again (a new epoch):
    # a loss and a gain, and nothing counted twice
    op.steps[2] = evac(2, StepState.PENDING, 104.0)
    m.listener(lead(engine, 9, 105.0))
    op.steps[2] = evac(2, StepState.DONE, 105.0)
    m.listener(lead(engine, 9, 105.0))
    got = scrape(m)
    assert get(got, "hastack_leader_changes_total") == 3
    assert get(got, "hastack_evacuations_total", outcome="done") == 2
    assert get(got, "hastack_evacuations_total", outcome="failed") == 1
    assert get(got, "hastack_epoch") == 9


def test_detection_needs_the_onset_seen_before_the_recovery_opened() -> None:
    engine = Journaled()
    m = Metrics(engine)
    m.listener(lead(engine, 1, 100.0))
    lost = ((Signal.PROBE, 101.0), (Signal.BMC, 102.5))
    engine.records = {"h1": HostRecord("h1", HostState.SUSPECT, 101.0, "", lost)}
    m.listener(lead(engine, 1, 103.0))
    # the recovery opens, and the same tick resets the host's record (as decide() does)
    engine.records = {"h1": HostRecord("h1", HostState.FENCING, 104.0, "fencing")}
    fence = Step(recovery.FENCE, "fence", {}, StepState.PENDING, 0, "", 104.0)
    engine.ops = {"op": Operation("op", recovery.RECOVER, "h1", 104.0, steps=[fence])}
    m.listener(lead(engine, 1, 104.0))
    proof = {"kind": ProofKind.OPERATOR.value}
    engine.ops["op"].steps[0] = Step("fence", "fence", {"proof": proof}, StepState.DONE, 0, "", 110)
    m.listener(lead(engine, 1, 110.0))
    got = scrape(m)
    assert get(got, "hastack_detection_seconds_count") == 1
    assert get(got, "hastack_detection_seconds_sum") == 104.0 - 101.0  # the earliest signal
    assert get(got, "hastack_fence_seconds_sum") == 6.0
    assert get(got, "hastack_fence_proofs_total", kind=ProofKind.OPERATOR.value) == 1
    assert get(got, "hastack_hosts", state="fencing") == 1


class Broken:
    records: Mapping[str, HostRecord] = {}
    lease: Lease | None = None

    @property
    def ops(self) -> Mapping[str, Operation]:
        raise RuntimeError("corrupt memory")


def test_a_failure_inside_the_listener_is_logged_and_never_reaches_the_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Broken()
    m = Metrics(engine)
    with caplog.at_level(logging.ERROR, logger="hastack.observability.metrics"):
        m.listener(lead(engine, 1, 100.0))
    assert "not recorded" in caplog.text and "corrupt memory" in caplog.text
    assert get(scrape(m), "hastack_tick_seconds_count") == 1
