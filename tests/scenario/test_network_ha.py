"""Network HA in virtual time: the real engine, both cores, the in-process Neutron.

After every tick the scenario checks its invariants, among them that no legacy router forwards
on two hosts (the simulator's forwarding truth: an isolated node keeps forwarding, a dead
agent's namespaces live on).
"""

from __future__ import annotations

import pytest

from hastack.policy import netrecovery
from hastack.sim import faults as sim_faults
from hastack.sim.build import CloudSpec
from hastack.sim.neutron import NeutronConfig
from hastack.sim.scenario import Fault, Scenario, ScenarioSpec
from hastack.sim.world import SimConfig

SEEDS = [1, 2, 3]
TIMING = SimConfig(
    report_interval=2.0,
    service_down_time=6.0,
    neutron=NeutronConfig(report_interval=2.0, agent_down_time=6.0, port_activate_seconds=1.0),
)


def spec(seed: int, faults: list[Fault], **kw: object) -> ScenarioSpec:
    cloud = CloudSpec(hosts=4, instances=8, seed=seed, network_nodes=4, routers=24, networks=12)
    return ScenarioSpec(cloud=cloud, timing=TIMING, faults=faults, **kw)  # type: ignore[arg-type]


def routers_on(sc: Scenario, host: str) -> list[str]:
    with sc.world.lock:
        state = sc.world.neutron
        return sorted(
            r
            for r, bound in state.l3_bindings.items()
            if any(state.agents[a].host == host for a in bound)
        )


def healthy_elsewhere(sc: Scenario, routers: list[str], dead: str) -> bool:
    """Every router hosted by one live agent off ``dead``, its ports ACTIVE there."""
    with sc.world.lock:
        state = sc.world.neutron
        for rid in routers:
            bound = state.l3_bindings.get(rid, {})
            hosts = {state.agents[a].host for a in bound}
            if len(bound) != 1 or dead in hosts:
                return False
            host = next(iter(hosts))
            for port in state.router_ports(rid):
                if port.status != "ACTIVE" or port.host_id != host:
                    return False
        return True


def dhcp_restored(sc: Scenario, dead: str, per_network: int) -> bool:
    with sc.world.lock:
        state = sc.world.neutron
        for bound in state.dhcp_bindings.values():
            live = [a for a in bound if state.agents[a].host != dead]
            if len(live) < per_network or len(live) != len(bound):
                return False
        return True


@pytest.mark.parametrize("seed", SEEDS)
def test_power_loss_of_a_network_node_moves_its_routers_and_dhcp(seed: int) -> None:
    with Scenario(spec(seed, [Fault(5, "network01", "power")])) as sc:
        mine = routers_on(sc, "network01")
        assert mine, "the build spreads routers over every node"
        done = sc.run(90, until=lambda s: healthy_elsewhere(s, mine, "network01"))
        assert done, "\n".join(sc.history[-30:])
        assert sc.run(30, until=lambda s: dhcp_restored(s, "network01", 2))
        assert sc.state_of("network01") in ("recovered", "fenced", "recovering")
        ops = [op for op in sc.operations() if op.kind == netrecovery.RECOVER_AGENT]
        assert {op.state.value for op in ops} == {"done"}
        moved = [s for op in ops for s in op.steps if s.kind == "router"]
        assert len(moved) == len(mine) and all(s.state.value == "done" for s in moved)
        assert all(s.params.get("proof") for s in moved)


@pytest.mark.parametrize("seed", SEEDS)
def test_an_isolated_node_still_forwarding_is_fenced_before_its_routers_move(seed: int) -> None:
    with Scenario(spec(seed, [Fault(5, "network02", "isolate")])) as sc:
        mine = routers_on(sc, "network02")
        assert sc.run(90, until=lambda s: healthy_elsewhere(s, mine, "network02"))
        with sc.world.lock:
            assert not sc.world.hosts["network02"].power_on  # fenced: its copies are gone
        # the invariant (no router on two hosts) held after every tick of the run


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_without_a_fence_device_legacy_routers_wait_and_say_why(seed: int) -> None:
    faults = [Fault(5, "network03", "isolate")]
    with Scenario(spec(seed, faults, no_fencing=frozenset({"network03"}))) as sc:
        mine = routers_on(sc, "network03")
        sc.run(60)
        assert routers_on(sc, "network03") == mine  # nothing moved: it may still forward
        ops = [op for op in sc.operations() if op.kind == netrecovery.RECOVER_AGENT]
        waiting = [
            s for op in ops for s in op.steps if s.kind == "router" and s.state.value == "pending"
        ]
        assert waiting and all("not proven off" in s.result for s in waiting)
        assert "waiting for a fence proof" in sc.engine.last_verdict


def test_an_agent_only_failure_moves_no_legacy_router_by_default() -> None:
    faults = [Fault(5, "network01", "agent-dead")]
    with Scenario(
        spec(4, faults, network=netrecovery.NetSettings(stale_after=5, agent_grace=20))
    ) as sc:
        mine = routers_on(sc, "network01")
        sc.run(60)
        assert routers_on(sc, "network01") == mine
        assert sc.state_of("network01") == "ok"  # host up: probes and its other agents answer


def test_unfenced_moves_after_an_agent_only_failure_risk_a_double_router() -> None:
    """The documented risk of ``unfenced_moves``: the dead agent's namespaces keep forwarding,
    so the moved router runs twice.  The invariant catches it."""
    relaxed = netrecovery.NetSettings(
        stale_after=5, agent_grace=10, unfenced_moves=True, unfenced_grace=15
    )
    faults = [Fault(5, "network01", "agent-dead")]
    with (
        Scenario(spec(4, faults, network=relaxed)) as sc,
        pytest.raises(AssertionError, match="routers forwarding on two hosts"),
    ):
        sc.run(60)


def test_dead_dhcp_agent_alone_is_replaced_after_the_grace() -> None:
    """DHCP needs no fence proof: a second dnsmasq does no harm.  The L3 agent of the node
    stays up, so no router moves."""
    settings = netrecovery.NetSettings(stale_after=5, agent_grace=15)
    with Scenario(spec(5, [], network=settings)) as sc:
        mine = routers_on(sc, "network01")
        sc.run(5)
        with sc.world.lock:
            sim_faults.fail(sc.world, "network01", "agent-dead", agent="dhcp")
        assert sc.run(60, until=lambda s: dhcp_restored(s, "network01", 2))
        assert routers_on(sc, "network01") == mine
