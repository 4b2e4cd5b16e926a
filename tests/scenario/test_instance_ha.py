"""Instance HA in virtual time: the real engine and core against the in-process simulator.

Every scenario runs over several seeds (different clouds, placements, evacuation timings), and
the harness checks the safety invariants after every tick: no instance on two hosts, no
evacuation without a fence proof for its source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from hastack.controller import request
from hastack.domain.instances import Protect, RecoveryPolicy
from hastack.engine.journal import StepState
from hastack.policy.guards import Budget, GuardPolicy
from hastack.sim.build import CloudSpec
from hastack.sim.scenario import Fault, Scenario, ScenarioSpec

SEEDS = range(12)


def spec(seed: int, faults: list[Fault], **kw: Any) -> ScenarioSpec:
    cloud = kw.pop("cloud", CloudSpec(hosts=10, instances=60, seed=seed))
    return ScenarioSpec(cloud=dataclasses.replace(cloud, seed=seed), faults=faults, **kw)


def victims(s: Scenario, host: str) -> list[str]:
    return [
        i.id for i in s.instances_on(host) if i.vm_state.value in ("active", "stopped", "error")
    ]


def recovered(host: str) -> Callable[[Scenario], bool]:
    return lambda s: s.state_of(host) == "recovered"


def assert_all_moved(s: Scenario, host: str, ids: list[str]) -> None:
    for vm in ids:
        inst = s.world.instances[vm]
        assert inst.host != host, f"{vm} still on {host}"
        assert s.running_where(vm) == {inst.host}, f"{vm} runs on {s.running_where(vm)}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["power", "hang", "isolate"])
def test_failed_host_is_fenced_and_every_instance_recovered(seed: int, mode: str) -> None:
    with Scenario(spec(seed, [Fault(5, "compute03", mode)])) as s:
        before = victims(s, "compute03")
        active = {i for i in before if s.world.instances[i].vm_state.value == "active"}
        assert s.run(300, until=recovered("compute03")), "\n".join(s.history)
        assert_all_moved(s, "compute03", before)
        for vm in active:
            assert s.world.instances[vm].vm_state.value == "active"
        assert not s.world.hosts["compute03"].power_on, "recovered only after a power off"


@pytest.mark.parametrize("seed", SEEDS)
def test_isolated_host_keeps_running_until_fenced(seed: int) -> None:
    """Isolation is the split-brain case: the host's VMs still run. Until the BMC has powered
    it off, nothing may be evacuated (the harness would see a VM on two hosts)."""
    with Scenario(spec(seed, [Fault(5, "compute04", "isolate")])) as s:
        ids = victims(s, "compute04")
        s.run(300, until=lambda sc: sc.state_of("compute04") in ("fencing", "fenced"))
        assert all(s.running_where(i) <= {"compute04"} for i in ids)
        assert s.run(300, until=recovered("compute04"))
        assert_all_moved(s, "compute04", ids)


@pytest.mark.parametrize("seed", SEEDS)
def test_flapping_signals_never_fail_a_host(seed: int) -> None:
    flaps = []
    for k in range(20):
        flaps += [
            Fault(5 + 2 * k, "compute02", "isolate"),
            Fault(6 + 2 * k, "compute02", "recover"),
        ]
    with Scenario(spec(seed, flaps)) as s:
        s.run(60)
        assert not s.operations(), "\n".join(s.history)
        assert s.state_of("compute02") in ("ok", "suspect")


@pytest.mark.parametrize("seed", SEEDS)
def test_compute_crash_alone_is_not_a_host_failure(seed: int) -> None:
    with Scenario(spec(seed, [Fault(5, "compute05", "compute-crash")])) as s:
        s.run(90)
        assert not s.operations(), "\n".join(s.history)
        assert s.state_of("compute05") == "suspect"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dead", ["bmc-dead", "bmc-hang", "bmc-busy"])
def test_dead_bmc_behind_every_level_leaves_fence_failed(seed: int, dead: str) -> None:
    # Both levels sit on the host's one simulated BMC, so a dead BMC fails both: expect
    # fence_failed, nothing evacuated, and the reason naming both levels.
    faults = [Fault(4, "compute06", dead), Fault(5, "compute06", "hang")]
    with Scenario(spec(seed, faults, fence_levels=2)) as s:
        ids = victims(s, "compute06")
        s.run(60)
        assert s.state_of("compute06") == "fence_failed", "\n".join(s.history)
        (op,) = s.operations()
        fence = op.step("fence")
        assert fence.state == StepState.FAILED
        assert "level 1" in fence.result and "level 2" in fence.result
        assert all(s.world.instances[i].host == "compute06" for i in ids), "nothing evacuated"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["power", "hang"])
def test_broken_first_level_fails_over_to_the_next(seed: int, mode: str) -> None:
    broken = {0: "authentication failed"}
    with Scenario(
        spec(seed, [Fault(5, "compute06", mode)], fence_levels=2, broken_levels=broken)
    ) as s:
        ids = victims(s, "compute06")
        assert s.run(300, until=recovered("compute06")), "\n".join(s.history)
        fence = s.operations()[0].step("fence")
        failed = [a for a in fence.params["attempts"] if not a["ok"]]
        assert failed and all(a["level"] == 0 for a in failed)
        assert "authentication failed" in failed[0]["reason"]
        assert fence.params["proof"]["by"] == "sim-bmc2 compute06"
        assert_all_moved(s, "compute06", ids)


@pytest.mark.parametrize("seed", SEEDS)
def test_fence_failed_host_recovers_after_operator_confirmation(seed: int) -> None:
    with Scenario(
        spec(seed, [Fault(5, "compute07", "hang")], no_fencing=frozenset({"compute07"}))
    ) as s:
        ids = victims(s, "compute07")
        s.run(40)
        assert s.state_of("compute07") == "fence_failed"
        assert "no fence device" in s.operations()[0].step("fence").result
        # the operator powers it off by hand, then confirms
        s.world.power_off(s.world.hosts["compute07"])
        request(s.store, "confirm", "compute07", {"operator": "alice", "at": s.clock.now()})
        assert s.run(120, until=recovered("compute07")), "\n".join(s.history)
        assert_all_moved(s, "compute07", ids)
        op = s.operations()[0]
        assert op.step("fence").params["proof"]["by"] == "alice"


@pytest.mark.parametrize("seed", SEEDS)
def test_nova_api_errors_are_retried(seed: int) -> None:
    with Scenario(spec(seed, [Fault(5, "compute03", "power")])) as s:
        ids = victims(s, "compute03")
        s.api_faults[:] = ["force_down", "evacuate"]
        s.run(20)
        assert s.state_of("compute03") in ("fenced", "recovering"), "\n".join(s.history)
        assert all(s.world.instances[i].host == "compute03" for i in ids)
        s.api_faults.clear()
        assert s.run(300, until=recovered("compute03")), "\n".join(s.history)
        assert_all_moved(s, "compute03", ids)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_capacity_reports_unplaceable_instances(seed: int) -> None:
    cloud = CloudSpec(hosts=3, instances=40, host_vcpus=16, host_memory_mb=32768)
    with Scenario(spec(seed, [Fault(5, "compute02", "power")], cloud=cloud)) as s:
        ids = victims(s, "compute02")
        assert s.run(300, until=recovered("compute02")), "\n".join(s.history)
        op = s.operations()[0]
        evacs = [st for st in op.steps if st.kind == "evacuate"]
        assert {e.params["instance"] for e in evacs} == set(ids)
        moved = [e for e in evacs if e.state == StepState.DONE]
        stuck = [e for e in evacs if e.state == StepState.FAILED]
        for e in stuck:
            assert e.params.get("skip") == "unplaceable" or "retry impossible" in e.result
            assert "room" in e.result or "no host" in e.result or "capacity" in e.result, e.result
        assert len(moved) + len(stuck) == len(ids)


@pytest.mark.parametrize("seed", SEEDS)
def test_several_hosts_at_once(seed: int) -> None:
    faults = [
        Fault(5, "compute02", "power"),
        Fault(6, "compute05", "hang"),
        Fault(7, "compute08", "power"),
    ]
    cloud = CloudSpec(hosts=30, instances=150)  # 3 of 10 at once would trip the cliff
    with Scenario(spec(seed, faults, cloud=cloud)) as s:
        ids = {h: victims(s, h) for h in ("compute02", "compute05", "compute08")}
        done = s.run(300, until=lambda sc: all(sc.state_of(h) == "recovered" for h in ids))
        assert done, "\n".join(s.history)
        for host, vms in ids.items():
            assert_all_moved(s, host, vms)


@pytest.mark.parametrize("seed", SEEDS)
def test_mass_failure_trips_the_cliff_and_fences_nobody(seed: int) -> None:
    hosts = [f"compute{i:02d}" for i in range(1, 7)]
    faults = [Fault(5, h, "isolate") for h in hosts]
    with Scenario(spec(seed, faults)) as s:
        s.run(180)  # well past the cliff window: it latches
        assert not s.operations(), "\n".join(s.history)
        assert all(s.world.hosts[h].power_on for h in hosts)
        assert any("cliff" in line for line in s.history)
        # an operator acknowledges: recoveries start, within the budget (20% of 10 hosts)
        request(s.store, "cliff-ack", body={"operator": "alice", "at": s.clock.now()})
        s.run(60)
        assert len(s.operations()) == 2, "\n".join(s.history)


@pytest.mark.parametrize("seed", SEEDS)
def test_budget_caps_fencing(seed: int) -> None:
    guards = GuardPolicy(budgets=(Budget("cloud", 1, 50.0, 600.0),), cliff_hosts=10)
    faults = [Fault(5, "compute02", "power"), Fault(40, "compute05", "power")]
    with Scenario(spec(seed, faults, guards=guards)) as s:
        s.run(120)
        assert [op.subject for op in s.operations()] == ["compute02"]
        assert s.state_of("compute05") == "failed"
        assert "budget spent" in s.engine.records["compute05"].reason


@pytest.mark.parametrize("seed", SEEDS)
def test_opt_in_policy_leaves_others_alone(seed: int) -> None:
    cloud = CloudSpec(hosts=10, instances=60, ha_enabled_ratio=0.5)
    policy = RecoveryPolicy(protect=Protect.OPT_IN, shared_storage=True)
    with Scenario(spec(seed, [Fault(5, "compute03", "power")], cloud=cloud, policy=policy)) as s:
        ids = victims(s, "compute03")
        tagged = {i for i in ids if s.world.instances[i].metadata.get("HA_Enabled") == "True"}
        assert s.run(300, until=recovered("compute03"))
        for vm in ids:
            assert (s.world.instances[vm].host != "compute03") == (vm in tagged)


@pytest.mark.parametrize("seed", SEEDS)
def test_manual_rejoin_waits_for_the_operator(seed: int) -> None:
    faults = [Fault(5, "compute03", "power"), Fault(40, "compute03", "recover")]
    with Scenario(spec(seed, faults, rejoin_auto=False)) as s:
        s.run(120)
        (op,) = s.open_operations()
        assert "waiting for an operator" in op.step("rejoin").result, "\n".join(s.history)
        assert s.world.hosts["compute03"].service.forced_down
        request(s.store, "rejoin", "compute03", {"operator": "alice", "at": s.clock.now()})
        assert s.run(30, until=lambda sc: not sc.open_operations())
        assert not s.world.hosts["compute03"].service.forced_down


@pytest.mark.parametrize("seed", SEEDS)
def test_host_rejoins_after_nova_cleans_up(seed: int) -> None:
    faults = [Fault(5, "compute03", "power"), Fault(60, "compute03", "recover")]
    with Scenario(spec(seed, faults)) as s:
        assert s.run(300, until=lambda sc: not sc.open_operations() and sc.operations())
        svc = s.world.hosts["compute03"].service
        assert not svc.forced_down and svc.status == "enabled"
        assert s.state_of("compute03") == "ok"
