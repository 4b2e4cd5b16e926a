"""decide(): the recovery state machine over plain data (no I/O, no clock)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.domain.fencing import FenceAttempt
from hastack.domain.hosts import HostObservation, HostRecord, HostState, Reading, Signal
from hastack.domain.instances import FlavorInfo, HostCapacity, InstanceInfo, RecoveryPolicy
from hastack.engine.journal import Operation, OpState, StepState
from hastack.policy import recovery
from hastack.policy.detection import PROFILES
from hastack.policy.fencing import OperatorConfirmation
from hastack.policy.guards import Budget, GuardPolicy
from hastack.ports.compute import ComputeService, EvacuationPhase, EvacuationStatus, Workload

HOSTS = [f"c{i}" for i in range(10)]
FLAVOR = FlavorInfo("m1", 2, 2048, 20)


def settings_for(**kw: Any) -> recovery.Settings:
    base: dict[str, Any] = {
        "profile": PROFILES["fast"],
        "guards": GuardPolicy(),
        "fence_levels": {h: (("ipmi " + h,), ("redfish " + h,)) for h in HOSTS},
        "segments": {
            h: recovery.Segment("default", RecoveryPolicy(shared_storage=True)) for h in HOSTS
        },
        "max_parallel": 3,
    }
    base.update(kw)
    return recovery.Settings(**base)


def obs(now: float, lost: set[str]) -> dict[str, HostObservation]:
    out = {}
    for h in HOSTS:
        gone = h in lost
        out[h] = HostObservation(
            h,
            (
                Reading(Signal.NOVA, gone, now),
                Reading(Signal.PROBE, gone, now),
            ),
        )
    return out


def snap(now: float, lost: set[str] = frozenset(), **kw: Any) -> recovery.Snapshot:  # type: ignore[assignment]
    kw.setdefault("services", {})
    return recovery.Snapshot(
        now=now,
        observations=obs(now, set(lost)),
        hosts_total=len(HOSTS),
        hosts_visible=len(HOSTS),
        **kw,
    )


def instance(i: int, host: str = "c0", **kw: Any) -> InstanceInfo:
    base: dict[str, Any] = {
        "id": f"vm{i}",
        "name": f"vm{i}",
        "host": host,
        "project_id": "p",
        "status": "ACTIVE",
        "task_state": None,
        "locked": False,
        "flavor": FLAVOR,
        "volume_backed": True,
    }
    base.update(kw)
    return InstanceInfo(**base)


def workload(n: int, host: str = "c0") -> Workload:
    dests = tuple(
        HostCapacity(h, "nova", frozenset(), True, True, 64, 65536, 1000)
        for h in HOSTS
        if h != host
    )
    return Workload(host, tuple(instance(i, host) for i in range(n)), dests, {}, {}, {})


class Driver:
    """Runs decide() pass after pass, applying outcomes the test chooses."""

    def __init__(self, st_: recovery.Settings) -> None:
        self.settings = st_
        self.records: dict[str, HostRecord] = {}
        self.ops: dict[str, Operation] = {}
        self.running: set[tuple[str, str]] = set()
        self.all_runs: list[tuple[float, recovery.Run]] = []

    def decide(self, snapshot: recovery.Snapshot) -> recovery.Decision:
        d = recovery.decide(
            snapshot, self.records, list(self.ops.values()), self.running, self.settings
        )
        self.records = dict(d.records)
        for op in d.writes:
            self.ops[op.id] = op
        for run in d.runs:
            self.ops[run.op] = recovery.mark_running(self.ops[run.op], run, snapshot.now)
            self.running.add((run.op, run.step))
            self.all_runs.append((snapshot.now, run))
        return d

    def finish(self, run: recovery.Run, now: float, **kw: Any) -> None:
        outcome = recovery.Outcome(run, kw.pop("ok", True), kw.pop("detail", "ok"), **kw)
        self.running.discard((run.op, run.step))
        self.ops[run.op] = recovery.apply_outcome(self.ops[run.op], outcome, self.settings, now)

    def op(self, host: str | None = None) -> Operation:
        (op,) = [o for o in self.ops.values() if host is None or o.subject == host]
        return op


def fail_host(d: Driver, host: str = "c0", start: float = 0.0) -> float:
    t = start
    for _ in range(5):
        d.decide(snap(t, {host}))
        if any(op.subject == host for op in d.ops.values()):
            return t
        t += 1.0
    raise AssertionError(f"{host} never failed: {d.records.get(host)}")


def off(level: int, device: str, at: float, ok: bool = True) -> FenceAttempt:
    return FenceAttempt(level, device, ok, "power off confirmed" if ok else "timeout", at)


def test_two_lost_signals_open_a_recovery_that_fences_first() -> None:
    d = Driver(settings_for())
    d.decide(snap(0.0, {"c0"}))
    assert d.records["c0"].state == HostState.SUSPECT or d.records["c0"].state == HostState.FAILED
    t = fail_host(d)
    op = d.op()
    assert op.kind == recovery.RECOVER and op.subject == "c0"
    fence_runs = [r for _, r in d.all_runs if r.action == "fence"]
    assert fence_runs and fence_runs[0].args["devices"] == ("ipmi c0",)
    assert not [r for _, r in d.all_runs if r.action != "fence"], "nothing before fencing"
    assert d.records["c0"].state == HostState.FENCING
    assert t >= PROFILES["fast"].confirm_after


def test_fence_proof_then_force_down_then_plan_then_bounded_evacuations() -> None:
    d = Driver(settings_for())
    t = fail_host(d)
    (fence,) = [r for _, r in d.all_runs if r.action == "fence"]
    d.finish(fence, t, attempts=(off(0, "ipmi c0", t),))
    d.decide(snap(t + 1, {"c0"}))
    assert d.op().step("fence").state == StepState.DONE
    assert recovery.proof_of(d.op()) is not None
    assert d.records["c0"].state == HostState.FENCED
    (down,) = [r for _, r in d.all_runs if r.action == "force-down"]
    d.finish(down, t + 1)
    d.decide(snap(t + 2, {"c0"}, workloads={"c0": workload(5)}))
    assert d.op().step("plan").state == StepState.DONE
    d.decide(snap(t + 3, {"c0"}))
    evacs = [r for _, r in d.all_runs if r.action == "evacuate"]
    assert len(evacs) == 3, "max_parallel bounds evacuations in flight"
    assert {r.args["target"] for r in evacs} <= set(HOSTS) - {"c0"}
    assert d.records["c0"].state == HostState.RECOVERING


def drive_to_evacuating(d: Driver, n: int = 5) -> float:
    t = fail_host(d)
    (fence,) = [r for _, r in d.all_runs if r.action == "fence"]
    d.finish(fence, t, attempts=(off(0, "ipmi c0", t),))
    d.decide(snap(t + 1, {"c0"}))
    (down,) = [r for _, r in d.all_runs if r.action == "force-down"]
    d.finish(down, t + 1)
    d.decide(snap(t + 2, {"c0"}, workloads={"c0": workload(n)}))
    return t + 2


def issue_one(d: Driver) -> tuple[float, recovery.Run]:
    """A one-VM recovery whose evacuation Nova has accepted: the time and the run."""
    t = drive_to_evacuating(d, 1)
    d.decide(snap(t + 1, {"c0"}))
    (run,) = [r for _, r in d.all_runs if r.action == "evacuate"]
    d.finish(run, t + 1, issued=True)
    return t, run


def status(vm: str, phase: EvacuationPhase, host: str, state: str = "ACTIVE") -> EvacuationStatus:
    return EvacuationStatus(vm, phase, host, state, None, "done", host)


def test_confirmation_needs_the_migration_and_the_host_and_restarts_shutoff() -> None:
    d = Driver(settings_for(max_parallel=10))
    t = drive_to_evacuating(d, 2)
    t += 1
    d.decide(snap(t, {"c0"}))
    for _, run in [x for x in d.all_runs if x[1].action == "evacuate"]:
        d.finish(run, t, issued=True)
    # Nova shows vm0 ACTIVE but still on the failed host: not proof
    running = EvacuationStatus(
        "vm0", EvacuationPhase.RUNNING, "c0", "ACTIVE", None, "pre-migrating", "c1"
    )
    shutoff = status("vm1", EvacuationPhase.DONE, "c2", "SHUTOFF")
    d.decide(snap(t + 1, {"c0"}, evacuations={"vm0": running, "vm1": shutoff}))
    assert d.op().step("evacuate:vm0").state == StepState.RUNNING
    starts = [r for _, r in d.all_runs if r.action == "start"]
    assert [r.args["instance"] for r in starts] == ["vm1"], "an ACTIVE VM left SHUTOFF is started"
    d.finish(starts[0], t + 1)
    done = {
        "vm0": status("vm0", EvacuationPhase.DONE, "c1"),
        "vm1": status("vm1", EvacuationPhase.DONE, "c2"),
    }
    d.decide(snap(t + 2, {"c0"}, evacuations=done))
    assert d.op().step("evacuate:vm0").state == StepState.DONE
    assert d.op().step("evacuate:vm1").state == StepState.DONE
    assert d.records["c0"].state == HostState.RECOVERED
    assert d.op().state == OpState.OPEN, "the rejoin step keeps it open until the host is back"


def test_a_heartbeat_from_before_the_fence_does_not_rejoin_the_host() -> None:
    # Found dead by probe and BMC, c0 is fenced while Nova still holds its last heartbeat as
    # fresh: that heartbeat is the dead host's last, and must not re-enable it in Nova.
    d = Driver(settings_for())
    t = drive_to_evacuating(d, 0)  # nothing to evacuate: rejoin is next
    fence_done = d.op().step(recovery.FENCE).updated  # type: ignore[union-attr]
    last_beat = fence_done - 1.0

    def service(at: float) -> dict[str, ComputeService]:
        return {"c0": ComputeService("c0", True, at, False, False)}

    cleaned = {"cleanup_pending": {"c0": 0}}
    d.decide(snap(t + 1, {"c0"}, services=service(last_beat), **cleaned))
    assert not [r for _, r in d.all_runs if r.action == "rejoin"]
    assert "waiting for the host to come back" in d.op().step(recovery.REJOIN).result  # type: ignore[union-attr]
    d.decide(snap(t + 2, {"c0"}, services=service(t + 1.5), **cleaned))
    assert [r.args["host"] for _, r in d.all_runs if r.action == "rejoin"] == ["c0"]


def test_an_evacuation_whose_target_died_and_was_fenced_is_retried_elsewhere() -> None:
    # Nova would wait forever on a rebuild cast to a dead compute; once that host is proven
    # off, the evacuation goes elsewhere (before the proof, its VMs could still run there).
    d = Driver(settings_for(retries=2))
    t, issued = issue_one(d)
    target = issued.args["target"]
    stuck = EvacuationStatus(
        "vm0", EvacuationPhase.RUNNING, "c0", "REBUILD", "rebuilding", "accepted", target
    )
    lost = {"c0", target}
    for now in range(int(t) + 2, int(t) + 8):  # the target fails; its recovery fences it
        d.decide(snap(float(now), lost, evacuations={"vm0": stuck}))
        step = d.op("c0").step("evacuate:vm0")
        assert step.state == StepState.RUNNING, "not retried before the target is proven off"
        fences = [r for _, r in d.all_runs if r.action == "fence" and r.args["host"] == target]
        if fences and (d.op(target).id, "fence") in d.running:
            d.finish(fences[-1], float(now), attempts=(off(0, f"ipmi {target}", float(now)),))
            break
    d.decide(snap(now + 1.0, lost, evacuations={"vm0": stuck}))  # the proof is recorded
    assert d.op("c0").step("evacuate:vm0").state == StepState.RUNNING
    d.decide(snap(now + 2.0, lost, evacuations={"vm0": stuck}))
    step = d.op("c0").step("evacuate:vm0")
    assert step.state == StepState.PENDING and step.params["retarget"], step
    assert f"its target {target} failed and was fenced" in step.result
    assert target in step.params["tried"]
    # Nova left it in REBUILD: the retry resets it and ignores the dead target's migration
    assert step.params["reset"] and step.params["abandoned"] == target


def test_failed_evacuation_is_retried_elsewhere_then_given_up() -> None:
    d = Driver(settings_for(retries=1))
    t, first = issue_one(d)
    failed = EvacuationStatus(
        "vm0", EvacuationPhase.FAILED, "c0", "ERROR", None, "error", first.args["target"]
    )
    d.decide(snap(t + 2, {"c0"}, evacuations={"vm0": failed}))
    step = d.op().step("evacuate:vm0")
    assert step.state == StepState.PENDING and step.params["retarget"]
    assert "c0" in recovery.workloads_needed(list(d.ops.values()))
    d.decide(snap(t + 3, {"c0"}, workloads={"c0": workload(1)}))
    second = [r for _, r in d.all_runs if r.action == "evacuate"][-1]
    assert second is not first and second.args["target"] != first.args["target"]
    d.finish(second, t + 3, issued=True)
    failed2 = dataclasses.replace(failed, destination=second.args["target"])
    d.decide(snap(t + 4, {"c0"}, evacuations={"vm0": failed2}))
    step = d.op().step("evacuate:vm0")
    assert step.state == StepState.FAILED and step.attempts == 2


def test_every_level_failing_leaves_fence_failed_until_an_operator_confirms() -> None:
    d = Driver(settings_for(fence_attempts=1))
    t = fail_host(d)
    for level, name in ((0, "ipmi c0"), (1, "redfish c0")):
        run = [r for _, r in d.all_runs if r.action == "fence"][-1]
        assert run.args["devices"] == (name,)
        d.finish(run, t, ok=False, attempts=(off(level, name, t, ok=False),))
        t += 1
        d.decide(snap(t, {"c0"}))
    assert d.records["c0"].state == HostState.FENCE_FAILED
    assert "every level failed" in d.op().step("fence").result
    for _ in range(5):
        t += 1
        d.decide(snap(t, {"c0"}))
    assert not [r for _, r in d.all_runs if r.action in ("force-down", "evacuate")]
    confirm = OperatorConfirmation("alice", t, "pulled the plug")
    d.decide(snap(t + 1, {"c0"}, confirmations={"c0": confirm}))
    proof = recovery.proof_of(d.op())
    assert proof is not None and proof.by == "alice"
    assert [r for _, r in d.all_runs if r.action == "force-down"]


def test_budget_refuses_with_numbers_and_opens_nothing() -> None:
    guards = GuardPolicy(budgets=(Budget("cloud", 1, 100.0, 600.0),), cliff_hosts=50)
    d = Driver(settings_for(guards=guards))
    t = fail_host(d, "c0")
    for _ in range(4):
        t += 1
        d.decide(snap(t, {"c0", "c1"}))
    assert [op.subject for op in d.ops.values()] == ["c0"]
    assert d.records["c1"].state == HostState.FAILED
    assert "budget spent: 1 fenced" in d.records["c1"].reason


def test_pause_stops_new_recoveries_and_steps() -> None:
    d = Driver(settings_for())
    for t in range(6):
        d.decide(snap(float(t), {"c0"}, paused=True))
    assert not d.ops and not d.all_runs


def test_maintenance_host_is_never_acted_on() -> None:
    d = Driver(settings_for())
    for t in range(6):
        d.decide(snap(float(t), {"c0"}, maintenance=frozenset({"c0"})))
    assert d.records["c0"].state == HostState.MAINTENANCE and not d.ops


def test_a_healthy_host_out_of_maintenance_is_ok_again() -> None:
    # healthy hosts skip assessment (the fast path): the return to ok must still be kept
    d = Driver(settings_for())
    d.decide(snap(0.0, set(), maintenance=frozenset({"c0"})))
    assert d.records["c0"].state == HostState.MAINTENANCE
    d.decide(snap(1.0, set()))
    assert d.records["c0"].state == HostState.OK
    assert d.records["c0"].reason == "back in service"


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from(HOSTS[:4]), max_size=3),  # hosts losing signals this pass
            st.sampled_from(["ok", "fail", "transient", "nothing"]),  # how runs finish
            st.booleans(),  # evacuations reported done this pass
        ),
        min_size=5,
        max_size=40,
    )
)
def test_never_an_action_without_proof_nor_an_instance_twice(passes: list[Any]) -> None:
    d = Driver(settings_for(max_parallel=4, retries=1))
    live_evacs: set[str] = set()
    for n, (lost, finish, report_done) in enumerate(passes):
        t = float(n)
        wl = {h: workload(3, h) for h in HOSTS[:4]}
        evac = {}
        if report_done:
            for op in d.ops.values():
                for s in op.steps:
                    if s.kind == "evacuate" and s.state == StepState.RUNNING:
                        evac[s.params["instance"]] = status(
                            s.params["instance"], EvacuationPhase.DONE, "c9"
                        )
        before = len(d.all_runs)
        d.decide(snap(t, lost, workloads=wl, evacuations=evac))
        for _, run in d.all_runs[before:]:
            op = d.ops[run.op]
            if run.action in ("force-down", "evacuate", "start"):
                assert recovery.proof_of(op) is not None, f"{run.action} without fence proof"
            if run.action == "evacuate":
                key = f"{op.subject}/{run.args['instance']}"
                assert key not in live_evacs, f"{key} evacuated twice while one was in flight"
                live_evacs.add(key)
        for _, run in d.all_runs[before:]:
            if finish == "nothing":
                continue
            if run.action == "fence":
                ok = finish == "ok"
                d.finish(
                    run, t, ok=ok, attempts=(off(run.args["level"], run.args["devices"][0], t, ok),)
                )
            elif run.action == "evacuate":
                if finish == "ok":
                    d.finish(run, t, issued=True)
                else:
                    d.finish(run, t, ok=False, transient=finish == "transient")
                    live_evacs.discard(f"{d.ops[run.op].subject}/{run.args['instance']}")
            else:
                d.finish(run, t, ok=finish == "ok", transient=finish == "transient")
        for op in d.ops.values():
            for s in op.steps:
                if s.kind == "evacuate" and s.state in (
                    StepState.DONE,
                    StepState.FAILED,
                    StepState.PENDING,
                ):
                    live_evacs.discard(f"{op.subject}/{s.params['instance']}")
    # budgets: never more recoveries opened than the cloud budget allows in its window
    assert len(d.ops) <= GuardPolicy().budgets[0].limit(len(HOSTS)) + 0


def test_a_confirmation_older_than_the_recovery_is_not_a_proof() -> None:
    d = Driver(settings_for())
    t = fail_host(d)
    (fence,) = [r for _, r in d.all_runs if r.action == "fence"]
    d.finish(fence, t, ok=False, attempts=(off(0, "ipmi c0", t, ok=False),))
    stale = OperatorConfirmation("alice", t - 100.0, "for an earlier failure")
    decision = d.decide(snap(t + 1, {"c0"}, confirmations={"c0": stale}))
    assert recovery.proof_of(d.op()) is None
    assert recovery.STALE_CONFIRMATION in [e.message for e in decision.events]
    assert not [r for _, r in d.all_runs if r.action in ("force-down", "evacuate")]
    retry = [r for _, r in d.all_runs if r.action == "fence"][-1]
    d.finish(retry, t + 1, ok=False, attempts=(off(0, "ipmi c0", t + 1, ok=False),))
    fresh = OperatorConfirmation("alice", t + 2, "checked the rack")
    d.decide(snap(t + 2, {"c0"}, confirmations={"c0": fresh}))
    assert recovery.proof_of(d.op()) is not None
