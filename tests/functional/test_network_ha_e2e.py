"""Network HA end to end: the HTTP simulator's Neutron and BMCs, the controller's production
wiring (NeutronNetwork over openstacksdk, IPMI fencing, TCP probes), failures injected as
``hastack sim fail`` does.  The checks read the simulator's data plane
(``NeutronState.forwarding``: where a router really forwards), not only Neutron's database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hastack.controller import request
from hastack.engine.journal import OpState, StepState
from hastack.policy import netrecovery
from hastack.sim import faults
from hastack.sim.neutron import NeutronConfig
from hastack.sim.world import SimConfig
from tests.functional.harness import Harness, wait_for

pytestmark = [pytest.mark.wire, pytest.mark.timeout(150)]

TIMING = SimConfig(
    report_interval=2,
    service_down_time=12,
    evacuate_seconds=1,
    host_boot_seconds=1,
    neutron=NeutronConfig(report_interval=2, agent_down_time=6, port_activate_seconds=1),
)
NODE = "network01"


def start(cloud: Callable[..., Harness]) -> Harness:
    h = cloud(hosts=3, instances=0, timing=TIMING, network_nodes=3, routers=15, networks=6)
    h.raw["network"] = {"stale_after": 5, "agent_grace": 20}
    h.start()
    return h


def routers_on(h: Harness, host: str) -> list[str]:
    with h.world.lock:
        return h.world.neutron.routers_hosted_on(host)


def moved_and_forwarding(h: Harness, routers: list[str], dead: str) -> bool:
    """Each router bound to one live agent off ``dead``, its ports ACTIVE there, and forwarding
    from that host only."""
    with h.world.lock:
        state = h.world.neutron
        for rid in routers:
            bound = state.l3_bindings.get(rid, {})
            hosts = {state.agents[a].host for a in bound}
            if len(bound) != 1 or dead in hosts:
                return False
            if state.forwarding(rid) != hosts:
                return False
            if any(p.status != "ACTIVE" or p.host_id not in hosts for p in state.router_ports(rid)):
                return False
        return True


def double_forwarding(h: Harness) -> dict[str, set[str]]:
    with h.world.lock:
        state = h.world.neutron
        return {
            r: hosts
            for r in state.routers
            if not state.routers[r].ha and len(hosts := state.forwarding(r)) > 1
        }


def agent_ops(h: Harness) -> list:
    return [op for op in h.journal() if op.kind == netrecovery.RECOVER_AGENT]


def test_network_node_power_loss_moves_its_routers_after_the_bmc_proves_it_off(
    cloud: Callable[..., Harness],
) -> None:
    h = start(cloud)
    mine = routers_on(h, NODE)
    assert mine, "the build spreads routers over every network node"
    faults.fail(h.world, NODE, "power")
    took = wait_for(
        lambda: moved_and_forwarding(h, mine, NODE),
        60,
        f"{NODE}'s routers forward elsewhere ({h.engine.last_verdict})",
    )
    assert took < 30, took
    ops = agent_ops(h)
    l3 = [op for op in ops if any(s.kind == netrecovery.ROUTER for s in op.steps)]
    assert len(l3) == 1, [op.log for op in ops]
    steps = [s for s in l3[0].steps if s.kind == netrecovery.ROUTER]
    assert sorted(s.params["router"] for s in steps) == mine
    wait_for(
        lambda: all(s.state == StepState.DONE for op in agent_ops(h) for s in op.steps),
        20,
        "every step done",
    )
    for s in (s for op in agent_ops(h) for s in op.steps if s.kind == netrecovery.ROUTER):
        assert s.params["proof"], s
        assert "power off" in s.params["proof"] or "fenced" in s.params["proof"], s.params["proof"]
        assert s.result.startswith("verified:"), s.result

    # DHCP: every network back to two live agents, none on the dead node.
    def dhcp_ok() -> bool:
        with h.world.lock:
            state = h.world.neutron
            return all(
                len(bound) == 2 and all(state.agents[a].host != NODE for a in bound)
                for bound in state.dhcp_bindings.values()
            )

    wait_for(dhcp_ok, 30, "DHCP restored")
    assert not double_forwarding(h)
    with h.world.lock:
        assert not h.world.hosts[NODE].power_on
    wait_for(lambda: all(op.state == OpState.DONE for op in agent_ops(h)), 20, "operations closed")


def test_isolated_unfenceable_node_keeps_its_routers_until_the_operator_confirms(
    cloud: Callable[..., Harness],
) -> None:
    """An isolated node keeps forwarding: moving its routers while it runs would put each
    router on two hosts.  Without a fence device the controller must wait -- however long the
    agents are silent -- until an operator powers the node off and confirms it."""
    h = cloud(hosts=3, instances=0, timing=TIMING, network_nodes=3, routers=15, networks=6)
    h.raw["network"] = {"stale_after": 5, "agent_grace": 5}
    h.raw["hosts"][NODE]["fencing"] = []
    h.start()
    mine = routers_on(h, NODE)
    faults.fail(h.world, NODE, "isolate")

    def waiting() -> bool:
        steps = [s for op in agent_ops(h) for s in op.steps if s.kind == netrecovery.ROUTER]
        return bool(steps) and all(s.result.startswith("waiting:") for s in steps)

    wait_for(waiting, 40, f"router steps waiting for a proof ({h.engine.last_verdict})")
    deadline = time.monotonic() + 10  # well past agent_grace: still nothing may move
    while time.monotonic() < deadline:
        assert not double_forwarding(h)
        assert routers_on(h, NODE) == mine
        with h.world.lock:
            assert all(h.world.neutron.forwarding(r) == {NODE} for r in mine)
        time.sleep(0.5)

    with h.world.lock:
        h.world.power_off(h.world.hosts[NODE])
    assert h.controller is not None
    request(h.controller.store, "confirm", NODE, {"operator": "alice", "at": time.time()})
    wait_for(lambda: moved_and_forwarding(h, mine, NODE), 40, "routers moved after the confirm")
    assert not double_forwarding(h)
    for s in (s for op in agent_ops(h) for s in op.steps if s.kind == netrecovery.ROUTER):
        assert "fenced" in s.params["proof"], s.params["proof"]
