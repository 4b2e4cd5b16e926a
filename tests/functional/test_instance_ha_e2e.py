"""Instance HA end to end: the HTTP simulator and the controller with its production wiring.

Each test starts a small simulated cloud in-process (Nova, Placement, Glance over HTTP, a real
IPMI and Redfish BMC and a TCP probe port per host), writes the controller's configuration from
the ``hastack.yaml`` the simulator offers, builds the controller with
:func:`hastack.controller.build_controller` (openstacksdk, pyghmi, sushy, sqlite journal), runs
its engine on a thread, injects failures with the functions ``hastack sim fail`` uses, and checks
the outcome against the simulator's physical truth: ``Instance.running_on`` is where a VM really
runs, ``Instance.host`` is only Nova's view.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import time
from collections.abc import Callable

import pytest

from hastack.controller import request
from hastack.drivers.openstack.connection import connect
from hastack.engine.journal import OpState, StepState
from hastack.sim import faults
from tests.functional.harness import DETECT, Harness, wait_for

pytestmark = [pytest.mark.wire, pytest.mark.timeout(120)]


def boot_on(h: Harness, host: str, count: int) -> list[str]:
    """Boot ``count`` servers on ``host`` through Nova (admin, forced host); their ids."""
    conn = connect(h.sim.files["clouds_yaml"], h.raw["cloud"]["name"])
    try:
        flavor = next(f for f in conn.compute.flavors() if f.vcpus == 1)
        image = next(iter(conn.image.images()))
        ids = []
        for n in range(count):
            response = conn.compute.post(
                "/servers",
                json={
                    "server": {
                        "name": f"e2e-{n}",
                        "flavorRef": flavor.id,
                        "imageRef": image.id,
                        "networks": "none",
                        "availability_zone": f"nova:{host}",
                    }
                },
                microversion="2.37",
            )
            ids.append(response.json()["server"]["id"])
    finally:
        conn.close()

    def active() -> bool:
        with h.world.lock:
            return all(
                h.world.instances[i].status == "ACTIVE" and h.world.instances[i].running_on
                for i in ids
            )

    wait_for(active, 20, f"{count} servers ACTIVE on {host}")
    return sorted(ids)


# ---------------------------------------------------------------- tests


def _recover_from_power_loss(h: Harness) -> tuple[str, list[str]]:
    host = h.busiest_host()
    victims = h.instances_on(host)
    faults.fail(h.world, host, "power")
    h.wait_state(host, "recovered")
    return host, victims


def test_power_loss_is_fenced_by_ipmi_and_every_instance_moves(
    cloud: Callable[..., Harness],
) -> None:
    h = cloud()
    h.start()
    host, victims = _recover_from_power_loss(h)

    h.assert_moved_once(host, victims)
    op = h.op(host)
    h.assert_all_evacuated(op, victims)
    fence = op.step("fence")
    assert fence is not None and fence.state == StepState.DONE
    proof = fence.params["proof"]
    assert proof["kind"] == "power-off-confirmed"
    assert proof["by"] == h.device_name(host, 0)
    assert proof["by"].startswith("ipmi 127.0.0.1:")
    assert all(h.evacuations()[v] == 1 for v in victims)
    with h.world.lock:
        svc = h.world.hosts[host].service
        assert svc.forced_down is True
        assert svc.status == "disabled"
        assert svc.disabled_reason is not None and "hastack" in svc.disabled_reason
        assert not h.world.hosts[host].power_on
    # the other hosts were never touched
    others = [n for n in h.world.hosts if n != host]
    assert all(h.state(n) == "ok" for n in others)
    assert [op.subject for op in h.journal()] == [host]


def test_kernel_hang_keeps_vms_until_fenced_then_moves_each_once(
    cloud: Callable[..., Harness],
) -> None:
    h = cloud()
    h.start()
    host = h.busiest_host()
    victims = h.instances_on(host)
    faults.fail(h.world, host, "hang")

    # Until the fence proof, the VMs still run on the hung host and nothing is evacuated.
    def fenced() -> bool:
        with h.world.lock:
            powered = h.world.hosts[host].power_on
            if powered:
                for vid in victims:
                    inst = h.world.instances[vid]
                    assert host in inst.running_on, (inst.name, inst.running_on)
                    assert inst.host == host, (inst.name, inst.host)
                assert not h.evacuations(), "evacuated while the host still had power"
        return not powered

    wait_for(fenced, DETECT, f"{host} powered off by the controller")
    h.wait_state(host, "recovered", 20)

    with h.world.lock:
        assert h.world.hosts[host].power_on is False
    h.assert_moved_once(host, victims)
    op = h.op(host)
    h.assert_all_evacuated(op, victims)
    fence = op.step("fence")
    assert fence is not None
    proof = fence.params["proof"]
    assert proof["by"] == h.device_name(host, 0)
    # every evacuation was issued after the proof was taken
    issued = [float(s.params["issued_at"]) for s in op.steps if s.kind == "evacuate"]
    assert min(issued) >= float(proof["confirmed_at"])
    assert all(h.evacuations()[v] == 1 for v in victims)


def test_wrong_ipmi_password_falls_back_to_redfish_without_leaking_secrets(
    cloud: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # The simulator's BMC condition (bmc-dead, ...) applies to both protocols of a host, so
    # level 1 is broken by configuring IPMI with a wrong password instead.
    h = cloud()
    host = h.busiest_host()
    victims = h.instances_on(host)
    real_password = h.world.hosts[host].bmc_password
    wrong = "Wr0ng-Secret-e2e-7f3a9c"
    levels = copy.deepcopy(h.raw["hosts"][host]["fencing"])
    assert [lvl["devices"][0]["type"] for lvl in levels] == ["ipmi", "redfish"]
    levels[0]["devices"][0]["password"] = wrong
    h.raw["hosts"][host]["fencing"] = levels
    caplog.set_level(logging.DEBUG, logger="hastack")
    h.start()
    faults.fail(h.world, host, "hang")
    h.wait_state(host, "recovered")

    with h.world.lock:
        assert h.world.hosts[host].power_on is False
    h.assert_moved_once(host, victims)
    op = h.op(host)
    h.assert_all_evacuated(op, victims)
    fence = op.step("fence")
    assert fence is not None
    attempts = fence.params["attempts"]
    level1 = [a for a in attempts if a["level"] == 0]
    assert level1, attempts
    assert all(not a["ok"] for a in level1), level1
    assert all(a["device"] == h.device_name(host, 0) for a in level1)
    assert any("authentication" in a["reason"].lower() for a in level1), level1
    level2 = [a for a in attempts if a["level"] == 1]
    assert level2 and level2[-1]["ok"], level2
    proof = fence.params["proof"]
    assert proof["by"] == h.device_name(host, 1)
    assert proof["by"].startswith("redfish https://")
    assert proof["detail"] == "level 2"
    dumped = op.to_json() + json.dumps(op.log)
    for secret in (wrong, real_password):
        assert secret not in dumped
        assert all(secret not in a["reason"] for a in attempts)
        assert secret not in caplog.text
    # whatever the journal holds, for every operation
    for other in h.journal():
        assert wrong not in other.to_json()


def test_no_fencing_waits_for_the_operator_then_recovers(cloud: Callable[..., Harness]) -> None:
    h = cloud()
    host = h.busiest_host()
    victims = h.instances_on(host)
    h.raw["hosts"][host]["fencing"] = []
    h.start()
    faults.fail(h.world, host, "hang")
    h.wait_state(host, "fence_failed")

    # fence_failed: nothing moves, the VMs still run where they were
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert h.state(host) == "fence_failed", h.state(host)
        with h.world.lock:
            assert h.world.hosts[host].power_on
            for vid in victims:
                inst = h.world.instances[vid]
                assert inst.host == host and host in inst.running_on, inst.name
            assert not h.evacuations()
        time.sleep(0.5)
    op = h.op(host)
    assert all(s.state == StepState.PENDING for s in op.steps if s.id != "fence")
    assert not [s for s in op.steps if s.kind == "evacuate"]
    with h.world.lock:
        svc = h.world.hosts[host].service
        assert not svc.forced_down and svc.status == "enabled"

    # the operator powers the host off, then confirms
    with h.world.lock:
        h.world.power_off(h.world.hosts[host])
    assert h.controller is not None
    request(h.controller.store, "confirm", host, {"operator": "alice", "at": time.time()})
    h.wait_state(host, "recovered", 20)

    h.assert_moved_once(host, victims)
    op = h.op(host)
    h.assert_all_evacuated(op, victims)
    fence = op.step("fence")
    assert fence is not None
    assert fence.params["proof"]["kind"] == "operator-confirmed"
    assert fence.params["proof"]["by"] == "alice"
    with h.world.lock:
        svc = h.world.hosts[host].service
        assert svc.forced_down and svc.status == "disabled"
        assert svc.disabled_reason is not None and "alice" in svc.disabled_reason


def test_recovered_host_rejoins_when_it_comes_back(cloud: Callable[..., Harness]) -> None:
    h = cloud()
    h.start()
    host, victims = _recover_from_power_loss(h)
    op = h.op(host)
    assert op.state == OpState.OPEN
    rejoin = op.step("rejoin")
    assert rejoin is not None and rejoin.state == StepState.PENDING

    faults.recover(h.world, host)
    h.wait_state(host, "ok", 30)
    wait_for(lambda: h.op(host).state == OpState.DONE, 10, "the recovery is done")

    op = h.op(host)
    rejoin = op.step("rejoin")
    assert rejoin is not None and rejoin.state == StepState.DONE
    with h.world.lock:
        svc = h.world.hosts[host].service
        assert svc.forced_down is False
        assert svc.status == "enabled"
        assert h.world.hosts[host].power_on and h.world.hosts[host].compute_running
        # the guests the host left behind were cleaned up, not restarted
        migs = [
            m
            for m in h.world.migrations.values()
            if m.migration_type == "evacuation" and m.source_compute == host
        ]
        assert migs and all(m.status == "completed" for m in migs), [m.status for m in migs]
    h.assert_moved_once(host, victims)
    # it stays ok: it is not fenced again
    time.sleep(3)
    assert h.state(host) == "ok"
    assert len(h.ops(host)) == 1


def test_controller_killed_mid_evacuation_resumes_without_double_evacuation(
    cloud: Callable[..., Harness],
) -> None:
    h = cloud(hosts=6, instances=60, host_vcpus=96, host_memory_mb=262144)
    h.raw["recovery"] = {"max_parallel": 3}
    h.start()
    host = h.busiest_host()
    victims = h.instances_on(host)
    assert len(victims) >= 8, len(victims)
    faults.fail(h.world, host, "power")

    def evacuating() -> bool:
        ops = h.ops(host)
        return bool(ops) and any(
            s.kind == "evacuate" and s.state == StepState.RUNNING for s in ops[0].steps
        )

    wait_for(evacuating, DETECT, f"an evacuation from {host} is running")
    h.stop()  # the leader dies with evacuations in flight and others not issued yet
    at_kill = h.evacuations()
    op = h.op(host)
    states = collections.Counter(s.state for s in op.steps if s.kind == "evacuate")
    assert states[StepState.PENDING] > 0, states  # work left for the successor
    in_flight = [s.params["instance"] for s in op.steps if s.state == StepState.RUNNING]
    assert in_flight and all(at_kill[i] == 1 for i in in_flight), (in_flight, at_kill)
    assert op.state == OpState.OPEN

    h.start(healthy=False)  # a new controller, the same configuration and journal
    h.wait_state(host, "recovered")
    op = h.op(host)
    h.assert_all_evacuated(op, victims)
    h.assert_moved_once(host, victims)
    counts = h.evacuations()
    assert all(counts[v] == 1 for v in victims), {v: counts[v] for v in victims if counts[v] != 1}
    assert all(n <= 1 for n in counts.values()), counts


def test_an_old_operator_confirmation_is_not_a_proof_for_a_later_failure(
    cloud: Callable[..., Harness],
) -> None:
    """An operator confirmed the host off for one failure; the host came back, rejoined, and
    later hangs again, with working BMCs.  That old confirmation must not stand in for fencing
    the new failure: the VMs of a hung host still run."""
    h = cloud()
    host = h.busiest_host()
    # the default budget (20% of 8 hosts per 10 minutes) would refuse the second fence
    h.raw["guards"] = {
        "budgets": [{"kind": "cloud", "max_hosts": 8, "max_percent": 100, "window": 600}]
    }
    h.start()
    assert h.controller is not None
    # first failure, recovered on the operator's word
    faults.fail(h.world, host, "power")
    request(h.controller.store, "confirm", host, {"operator": "alice", "at": time.time()})
    h.wait_state(host, "recovered")
    faults.recover(h.world, host)
    wait_for(lambda: h.ops(host)[0].state == OpState.DONE, 30, "the first recovery is done")
    h.wait_state(host, "ok", 10)

    # new servers land on the host, then, weeks later in real life, its kernel hangs
    victims = boot_on(h, host, 3)
    faults.fail(h.world, host, "hang")
    wait_for(lambda: len(h.ops(host)) == 2, DETECT, "a second recovery is opened")
    h.wait_state(host, "recovered", 20)

    second = max(h.ops(host), key=lambda op: op.created)
    fence = second.step("fence")
    assert fence is not None
    with h.world.lock:
        twice = {
            i.name: sorted(i.running_on)
            for i in h.world.instances.values()
            if len(i.running_on) > 1
        }
        powered = h.world.hosts[host].power_on
    assert not twice, f"VMs running twice: {twice}; proof {fence.params['proof']}"
    assert fence.params["proof"]["kind"] == "power-off-confirmed", fence.params["proof"]
    assert not powered
    h.assert_moved_once(host, victims)
