"""The world model in virtual time: Nova's rules, physical truth and determinism."""

from __future__ import annotations

import pytest

from hastack.clock import VirtualClock
from hastack.sim import faults, servers
from hastack.sim.bmc.backend import BmcCondition, PowerAction
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.errors import BadRequest, Conflict, NotFound
from hastack.sim.model import VmState
from hastack.sim.world import SimConfig, World


def make_world(hosts: int = 6, instances: int = 60, seed: int = 1, **timing: float) -> World:
    config = SimConfig(report_interval=10, service_down_time=60, **timing)
    world = World(VirtualClock(), seed=seed, config=config)
    build_world(world, CloudSpec(hosts=hosts, instances=instances, seed=seed))
    return world


def clock(world: World) -> VirtualClock:
    assert isinstance(world.clock, VirtualClock)
    return world.clock


def test_build_is_deterministic_per_seed() -> None:
    a, b, c = make_world(seed=3), make_world(seed=3), make_world(seed=4)
    placement = lambda w: sorted((i.id, i.host) for i in w.instances.values())  # noqa: E731
    assert placement(a) == placement(b)
    assert placement(a) != placement(c)


def test_heartbeat_goes_stale_only_after_service_down_time() -> None:
    world = make_world()
    host = world.hosts["compute01"]
    clock(world).advance(100)
    assert world.service_is_up(host)
    before = world.service_updated_at(host)
    assert world.clock.now() - before <= 10  # reported within the last interval
    faults.fail(world, "compute01", "power")
    frozen = world.service_updated_at(host)
    clock(world).advance(30)
    assert world.service_updated_at(host) == frozen  # updated_at stops advancing at once
    assert world.service_is_up(host)  # but Nova still calls it up
    clock(world).advance(45)
    assert not world.service_is_up(host)


def test_forced_down_service_is_down_at_once() -> None:
    world = make_world()
    world.update_service("compute02", forced_down=True)
    assert not world.service_is_up(world.hosts["compute02"])


def test_evacuate_refused_while_source_service_up() -> None:
    world = make_world()
    vm = world.list_instances(host="compute01")[0]
    with pytest.raises(BadRequest, match=r"Compute service of compute01 is still in use\."):
        servers.evacuate_server(world, vm.id)
    faults.fail(world, "compute01", "power")
    with pytest.raises(BadRequest, match="still in use"):
        servers.evacuate_server(world, vm.id)  # down physically, not yet in Nova's eyes
    world.update_service("compute01", forced_down=True)
    servers.evacuate_server(world, vm.id)
    assert vm.task_state == "rebuilding" and vm.status == "REBUILD"


def test_evacuate_refusals_for_bad_targets_and_states() -> None:
    world = make_world()
    faults.fail(world, "compute01", "power")
    world.update_service("compute01", forced_down=True)
    vm = world.list_instances(host="compute01")[0]
    with pytest.raises(NotFound, match=r"Compute host nowhere not found\."):
        servers.evacuate_server(world, vm.id, host="nowhere")
    with pytest.raises(BadRequest, match=r"The target host can't be the same one\."):
        servers.evacuate_server(world, vm.id, host="compute01")
    servers.evacuate_server(world, vm.id)
    with pytest.raises(Conflict, match="while it is in task_state rebuilding"):
        servers.evacuate_server(world, vm.id)


def test_evacuation_phases_match_real_nova() -> None:
    """ACTIVE with the old host for a moment, then the host flips and the migration is done."""
    world = make_world(evacuate_seconds=3, evacuate_jitter=0, evacuate_stale_window=0.5)
    faults.fail(world, "compute01", "power")
    world.update_service("compute01", forced_down=True)
    vm = world.list_instances(host="compute01")[0]
    servers.evacuate_server(world, vm.id)
    mig = max(world.migrations.values(), key=lambda m: m.id)
    assert (mig.status, mig.migration_type, mig.source_compute) == (
        "accepted",
        "evacuation",
        "compute01",
    )
    clock(world).advance(0.2)
    assert mig.status == "pre-migrating" and mig.dest_compute not in (None, "compute01")
    clock(world).advance(3.0)
    assert vm.status == "ACTIVE" and vm.host == "compute01"  # not yet proof
    assert mig.status == "pre-migrating"
    clock(world).advance(0.5)
    assert vm.host == mig.dest_compute and mig.status == "done"
    assert vm.running_on == {mig.dest_compute}
    assert [a.action for a in world.actions[vm.id]][-1] == "evacuate"


def test_evacuate_at_2_95_leaves_server_stopped() -> None:
    world = make_world(evacuate_jitter=0)
    faults.fail(world, "compute01", "power")
    world.update_service("compute01", forced_down=True)
    vm = world.list_instances(host="compute01")[0]
    servers.evacuate_server(world, vm.id, target_state=VmState.STOPPED)
    clock(world).advance(10)
    assert vm.status == "SHUTOFF" and vm.host != "compute01" and not vm.running_on


def test_evacuation_without_capacity_errors_like_conductor() -> None:
    world = make_world(hosts=2, instances=0)
    flavor = world.flavors["5"]
    vm = servers.create_server(
        world,
        name="big",
        flavor_id=flavor.id,
        image_id=next(iter(world.images)),
        project_id=world.admin_project,
        user_id=world.admin_user,
        host="compute01",
    )
    clock(world).advance(5)
    assert vm.status == "ACTIVE"
    world.update_service("compute02", status="disabled", disabled_reason="maintenance")
    faults.fail(world, "compute01", "power")
    world.update_service("compute01", forced_down=True)
    servers.evacuate_server(world, vm.id)
    clock(world).advance(5)
    mig = max(world.migrations.values(), key=lambda m: m.id)
    assert mig.status == "error" and vm.status == "ERROR" and vm.host == "compute01"


def test_restarted_source_cleans_up_and_force_up_is_guarded() -> None:
    world = make_world(evacuate_jitter=0)
    faults.fail(world, "compute01", "compute-crash")
    world.update_service("compute01", forced_down=True)
    vms = world.list_instances(host="compute01")
    for vm in vms:
        servers.evacuate_server(world, vm.id)
    clock(world).advance(10)
    # nova-compute crashed, the VMs kept running: the simulator knows it is a split brain
    assert all(len(vm.running_on) == 2 for vm in vms if vm.vm_state == VmState.ACTIVE)
    faults.recover(world, "compute01")  # nova-compute restarts: init_host destroys them
    assert all(len(vm.running_on) == 1 and vm.host != "compute01" for vm in vms)
    done = [m for m in world.migrations.values() if m.source_compute == "compute01"]
    assert done and all(m.status == "completed" for m in done)
    used = world.usage["compute01"]
    assert (used.vcpus, used.memory_mb, used.disk_gb) == (0, 0, 0)


def test_power_loss_kills_vms_hang_and_isolation_do_not() -> None:
    world = make_world()
    on = lambda h: [i for i in world.instances.values() if h in i.running_on]  # noqa: E731
    assert on("compute01") and on("compute02") and on("compute03")
    faults.fail(world, "compute01", "power")
    faults.fail(world, "compute02", "hang")
    faults.fail(world, "compute03", "isolate")
    assert not on("compute01") and on("compute02") and on("compute03")
    assert world.power_is_on("compute02") and not world.power_is_on("compute01")
    for name in ("compute01", "compute02", "compute03"):
        assert not world.hosts[name].heartbeating


def test_bmc_power_off_is_a_power_loss_and_on_boots_with_cleanup() -> None:
    world = make_world(host_boot_seconds=5)
    vms = world.list_instances(host="compute04")
    world.set_power("compute04", PowerAction.OFF)
    assert not world.power_is_on("compute04") and not any(v.running_on for v in vms)
    world.set_power("compute04", PowerAction.ON)
    assert world.power_is_on("compute04") and not world.hosts["compute04"].heartbeating
    clock(world).advance(6)
    assert world.hosts["compute04"].heartbeating
    assert all(v.status == "SHUTOFF" for v in vms)  # guests that died with the host


def test_soft_power_off_is_ignored_by_a_hung_kernel() -> None:
    world = make_world()
    faults.fail(world, "compute05", "hang")
    world.set_power("compute05", PowerAction.SOFT)
    clock(world).advance(60)
    assert world.power_is_on("compute05")
    world.set_power("compute05", PowerAction.OFF)
    assert not world.power_is_on("compute05")


def test_bmc_faults_and_recover() -> None:
    world = make_world()
    faults.fail(world, "compute06", "bmc-busy")
    assert world.bmc_condition("compute06") == BmcCondition.BUSY
    faults.recover(world, "compute06")
    assert world.bmc_condition("compute06") == BmcCondition.OK
    with pytest.raises(BadRequest, match="unknown failure mode"):
        faults.fail(world, "compute06", "meteor")
    with pytest.raises(NotFound):
        faults.fail(world, "compute99", "power")


def test_same_seed_same_history() -> None:
    """Two runs of the same scenario produce the same event log, timestamps included."""

    def run() -> list[tuple[float, str, str]]:
        world = make_world(seed=11)
        log: list[tuple[float, str, str]] = []
        world.subscribe(
            lambda kind, f: log.append((world.clock.now(), kind, repr(sorted(f.items()))))
        )
        faults.fail(world, "compute02", "power")
        clock(world).advance(70)
        world.update_service("compute02", forced_down=True)
        for vm in world.list_instances(host="compute02"):
            servers.evacuate_server(world, vm.id)
        clock(world).advance(30)
        faults.recover(world, "compute02")
        clock(world).advance(30)
        return log

    first, second = run(), run()
    assert first == second and len(first) > 10


def test_scheduler_respects_anti_affinity_and_capacity() -> None:
    world = make_world(hosts=3, instances=0)
    group = next(iter(world.server_groups.values()))
    made = [
        servers.create_server(
            world,
            name=f"aa{i}",
            flavor_id="1",
            image_id=next(iter(world.images)),
            project_id=world.admin_project,
            user_id=world.admin_user,
            server_group=group.id,
        )
        for i in range(4)
    ]
    hosts = [vm.host for vm in made[:3]]
    assert len(set(hosts)) == 3
    assert made[3].status == "ERROR" and made[3].fault and "No valid host" in made[3].fault
