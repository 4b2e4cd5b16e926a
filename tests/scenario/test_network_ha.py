"""Network HA in virtual time: the real engine, both cores, the in-process Neutron.

After every tick the scenario checks its invariants, among them that no legacy router forwards
on two hosts (the simulator's forwarding truth: an isolated node keeps forwarding, a dead
agent's namespaces live on).
"""

from __future__ import annotations

import pytest

from hastack.engine.journal import StepState
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
        return sc.world.neutron.routers_hosted_on(host)


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


def l3_agent_hosts(sc: Scenario, rid: str) -> list[str]:
    with sc.world.lock:
        state = sc.world.neutron
        return sorted(state.agents[a].host for a in state.l3_bindings.get(rid, {}))


def router_steps(sc: Scenario) -> list:
    return [
        s
        for op in sc.operations()
        if op.kind == netrecovery.RECOVER_AGENT
        for s in op.steps
        if s.kind == "router"
    ]


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_ha_routers_keep_forwarding_and_get_their_dead_binding_replaced(seed: int) -> None:
    """keepalived fails over by itself; hastack restores the second instance (no fence proof
    needed: a stale backup cannot forward beside the master it defers to)."""
    cloud = CloudSpec(
        hosts=4, instances=4, seed=seed, network_nodes=4, routers=12, networks=4, ha_routers=12
    )
    with Scenario(
        ScenarioSpec(cloud=cloud, timing=TIMING, faults=[Fault(5, "network01", "power")])
    ) as sc:
        mine = routers_on(sc, "network01")
        assert mine

        def restored(s: Scenario) -> bool:
            return all(
                len(hosts := l3_agent_hosts(s, rid)) == 2 and "network01" not in hosts
                for rid in mine
            )

        assert sc.run(90, until=restored), "\n".join(sc.history[-30:])
        with sc.world.lock:
            state = sc.world.neutron
            for rid in mine:
                assert len(state.forwarding(rid)) == 1, (rid, state.forwarding(rid))
        assert sc.run(60, until=lambda s: all(st.state.value == "done" for st in router_steps(s)))
        assert {s.params["mode"] for s in router_steps(sc)} == {"ha"}


def test_two_masters_are_reported_once_when_they_appear_and_once_when_they_clear() -> None:
    cloud = CloudSpec(
        hosts=4, instances=4, seed=2, network_nodes=3, routers=4, networks=2, ha_routers=4
    )
    with Scenario(ScenarioSpec(cloud=cloud, timing=TIMING)) as sc:
        rid = sorted(sc.world.neutron.routers)[0]
        sc.run(5)
        with sc.world.lock:
            sc.world.neutron.vrrp_fault(rid, "split")
        sc.run(130)
        with sc.world.lock:
            sc.world.neutron.vrrp_fault(rid, "clear")
        sc.run(130)
        reports = [h for h in sc.history if f"HA router {rid}" in h]
        assert len(reports) == 2, sc.history[-20:]
        assert reports[0].endswith("split brain") and "2 active instances" in reports[0]
        assert reports[1].endswith("back to one active instance")


def test_dvr_snat_moves_off_a_dead_dvr_snat_node_after_the_fence() -> None:
    cloud = CloudSpec(
        hosts=4, instances=4, seed=3, network_nodes=3, routers=9, networks=3, dvr=True
    )
    with Scenario(
        ScenarioSpec(cloud=cloud, timing=TIMING, faults=[Fault(5, "network02", "power")])
    ) as sc:
        mine = routers_on(sc, "network02")
        assert mine

        def snat_elsewhere(s: Scenario) -> bool:
            with s.world.lock:
                state = s.world.neutron
                for rid in mine:
                    snat = [
                        a
                        for a in state.l3_bindings.get(rid, {})
                        if state.agents[a].configurations.get("agent_mode") == "dvr_snat"
                    ]
                    if len(snat) != 1 or state.agents[snat[0]].host == "network02":
                        return False
                    host = state.agents[snat[0]].host
                    snat_ports = [
                        p
                        for p in state.router_ports(rid)
                        if p.device_owner == "network:router_centralized_snat"
                    ]
                    if not snat_ports or any(
                        p.status != "ACTIVE" or p.host_id != host for p in snat_ports
                    ):
                        return False
                return True

        assert sc.run(90, until=snat_elsewhere), "\n".join(sc.history[-30:])
        steps = [
            s
            for op in sc.operations()
            if op.kind == netrecovery.RECOVER_AGENT
            for s in op.steps
            if s.kind == "router"
        ]
        assert steps and {s.params["mode"] for s in steps} == {"snat"}
        assert all(s.params.get("proof") for s in steps)


def test_rebalance_through_the_engine_spreads_routers_after_a_node_returns() -> None:
    from hastack.controller import request  # noqa: PLC0415

    faults = [Fault(5, "network01", "power"), Fault(30, "network01", "recover")]
    with Scenario(spec(6, faults)) as sc:
        mine = routers_on(sc, "network01")
        assert sc.run(25, until=lambda s: healthy_elsewhere(s, mine, "network01"))
        # the node boots, its agents heartbeat again, it rejoins: empty
        assert sc.run(60, until=lambda s: s.state_of("network01") == "ok" and s.elapsed > 30)
        sc.run(3)
        assert routers_on(sc, "network01") == []
        request(sc.store, "rebalance", body={"operator": "alice", "at": sc.clock.now()})
        sc.run(40)
        with sc.world.lock:
            state = sc.world.neutron
            load = {a.id: 0 for a in state.agents.values() if a.agent_type == "L3 agent"}
            for bound in state.l3_bindings.values():
                for a in bound:
                    load[a] += 1
        assert max(load.values()) - min(load.values()) <= 1, load
        ops = [op for op in sc.operations() if op.kind == netrecovery.REBALANCE]
        assert len(ops) == 1 and ops[0].state.value == "done"
        assert routers_on(sc, "network01")  # it took its share back


def test_a_controller_crash_mid_move_resumes_it_on_the_same_target() -> None:
    """The leader dies between the two calls of a move: the step is journaled ``running``, the
    router already removed from the dead agent, not yet added anywhere.  The next leader runs
    the step again -- to the target it journaled -- and no router is ever added to two agents."""
    settings = netrecovery.NetSettings(stale_after=5, max_parallel=2)
    with Scenario(spec(7, [Fault(5, "network01", "power")], network=settings)) as sc:
        mine = routers_on(sc, "network01")
        targets: dict[str, set[str]] = {}
        add = sc.network.add_router

        def counting(agent_id: str, router_id: str) -> None:
            targets.setdefault(router_id, set()).add(agent_id)
            add(agent_id, router_id)

        sc.network.add_router = counting  # type: ignore[method-assign]
        assert sc.run(60, until=lambda s: 0 < len(targets) < len(mine) - 1)

        # The crash: a pending move marked running in the journal, its first call made.
        engine = sc.engine
        op = next(
            o
            for o in engine.ops.values()
            if o.kind == netrecovery.RECOVER_AGENT and any(st.kind == "router" for st in o.steps)
        )
        step = next(
            st
            for st in op.steps
            if st.kind == "router" and st.state.value == "pending" and st.params.get("target")
        )
        step.state = StepState.RUNNING
        step.params["proof"] = "network01 fenced (fenced)"  # as the executor journals it
        engine._write(op)
        sc.network.remove_router(step.params["source"], step.params["router"])
        sc.restart_controller()

        assert sc.run(120, until=lambda s: healthy_elsewhere(s, mine, "network01"))
        assert sorted(targets) == mine
        assert all(len(agents) == 1 for agents in targets.values()), targets
        assert targets[step.params["router"]] == {step.params["target"]}
