"""The simulator's Neutron in virtual time: agent heartbeats, router scheduling, port status."""

from __future__ import annotations

import pytest

from hastack.clock import VirtualClock
from hastack.sim import faults
from hastack.sim import neutron as n
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.world import World


@pytest.fixture
def world() -> World:
    w = World(VirtualClock(), seed=3)
    build_world(w, CloudSpec(hosts=2, instances=4, network_nodes=2, routers=2, networks=2))
    return w


def agents(world: World, host: str, kind: str = n.L3) -> n.Agent:
    return next(a for a in world.neutron.host_agents(host) if a.agent_type == kind)


def hosting(world: World, router_id: str) -> n.Agent:
    return world.neutron.l3_agents_of(router_id)[0]


def test_seeded_cloud_is_scheduled_and_active(world: World) -> None:
    st = world.neutron
    assert len(st.agents) == 8
    assert not world.hosts["network01"].compute  # no nova-compute: no VM scheduled there
    for net in st.networks.values():
        if not net.external:
            assert len(st.dhcp_agents_of(net.id)) == 2
    loads = sorted(len(st.routers_on(agents(world, h).id)) for h in ("network01", "network02"))
    assert loads == [1, 1]  # least loaded first
    assert all(p.status == "ACTIVE" for p in st.ports.values())
    assert all(f.status == "ACTIVE" for f in st.floating_ips.values())


def test_agents_go_dead_after_agent_down_time_when_the_node_powers_off(world: World) -> None:
    clock = world.clock
    assert isinstance(clock, VirtualClock)
    agent = agents(world, "network01")
    clock.advance(100)
    assert world.neutron.is_alive(agent)
    with world.lock:
        world.power_off(world.hosts["network01"])
    last = world.neutron.heartbeat_at(agent)
    assert clock.now() - 30 <= last <= clock.now()  # the last report before the power went
    clock.advance_to(last + 70)
    assert world.neutron.is_alive(agent)  # agent_down_time (75 s) has not passed yet
    assert world.neutron.heartbeat_at(agent) == last
    clock.advance(10)
    assert not world.neutron.is_alive(agent)
    clock.advance(30)  # the other agents report on their own phase
    assert all(not world.neutron.is_alive(a) for a in world.neutron.host_agents("network01"))
    assert world.neutron.is_alive(agents(world, "network02"))
    faults.recover(world, "network01")
    clock.advance(world.config.host_boot_seconds + 1)
    assert world.neutron.is_alive(agent)


def test_router_on_live_agent_gets_active_ports_on_its_host_after_the_delay(world: World) -> None:
    st = world.neutron
    router = next(iter(st.routers.values()))
    old = hosting(world, router.id)
    new = next(a for a in st.agents.values() if a.agent_type == n.L3 and a is not old)
    with world.lock:
        st.remove_router_from_agent(old.id, router.id)
    assert {p.status for p in st.router_ports(router.id)} == {"DOWN"}
    assert {f.status for f in st.router_fips(router.id)} == {"DOWN"}
    with world.lock:
        st.add_router_to_agent(new.id, router.id)
    world.clock.advance(0.5)  # type: ignore[attr-defined]
    assert {p.status for p in st.router_ports(router.id)} == {"DOWN"}
    world.clock.advance(0.6)  # type: ignore[attr-defined]
    assert {p.status for p in st.router_ports(router.id)} == {"ACTIVE"}
    assert {p.host_id for p in st.router_ports(router.id)} == {new.host}
    assert {f.status for f in st.router_fips(router.id)} == {"ACTIVE"}


def test_router_on_dead_agent_stays_down_until_the_agent_returns(world: World) -> None:
    st = world.neutron
    router = next(iter(st.routers.values()))
    old = hosting(world, router.id)
    new = next(a for a in st.agents.values() if a.agent_type == n.L3 and a is not old)
    faults.fail(world, new.host, "isolate")
    world.clock.advance(80)  # type: ignore[attr-defined]
    assert not st.is_alive(new)
    with world.lock:
        st.remove_router_from_agent(old.id, router.id)
        st.add_router_to_agent(new.id, router.id)  # Neutron does not check liveness here
    world.clock.advance(10)  # type: ignore[attr-defined]
    ports = st.router_ports(router.id)
    assert {p.status for p in ports} == {"DOWN"}
    assert {p.host_id for p in ports} == {old.host}
    faults.recover(world, new.host)
    world.clock.advance(2)  # type: ignore[attr-defined]
    assert {p.status for p in ports} == {"ACTIVE"}
    assert {p.host_id for p in ports} == {new.host}


def test_legacy_router_hosted_elsewhere_is_a_409(world: World) -> None:
    st = world.neutron
    router = next(iter(st.routers.values()))
    other = next(
        a for a in st.agents.values() if a.agent_type == n.L3 and a is not hosting(world, router.id)
    )
    with pytest.raises(n.NeutronError) as err:
        st.add_router_to_agent(other.id, router.id)
    assert (err.value.status, err.value.kind) == (409, "RouterHostedByL3Agent")
    dhcp = agents(world, "network01", n.DHCP)
    with pytest.raises(n.NeutronError) as err:
        st.add_router_to_agent(dhcp.id, router.id)
    assert (err.value.status, err.value.kind) == (404, "InvalidL3Agent")


def test_agents_down_keeps_the_host_up(world: World) -> None:
    faults.fail(world, "network02", "agents-down")
    world.clock.advance(80)  # type: ignore[attr-defined]
    host = world.hosts["network02"]
    assert host.power_on and not host.hung and not host.isolated
    assert all(not world.neutron.is_alive(a) for a in world.neutron.host_agents("network02"))
    assert all(world.neutron.is_alive(a) for a in world.neutron.host_agents("network01"))
    faults.recover(world, "network02")
    assert all(world.neutron.is_alive(a) for a in world.neutron.host_agents("network02"))


def test_ha_router_reads_standby_on_a_dead_active_agent(world: World) -> None:
    st = world.neutron
    router = next(iter(st.routers.values()))
    router.ha = True
    first = hosting(world, router.id)
    second = next(a for a in st.agents.values() if a.agent_type == n.L3 and a is not first)
    with world.lock:
        st.add_router_to_agent(second.id, router.id)
    assert st.ha_states(router.id) == {first.id: "active", second.id: "standby"}
    faults.fail(world, first.host, "power")
    world.clock.advance(80)  # type: ignore[attr-defined]
    assert st.ha_states(router.id)[first.id] == "standby"
    faults.fail(world, second.host, "power")
    world.clock.advance(80)  # type: ignore[attr-defined]
    assert st.ha_states(router.id)[first.id] == "unknown"


# ---------------------------------------------------------------------- network nodes


def test_network_nodes_are_not_compute_hosts(world: World) -> None:
    from hastack.sim.drivers import SimCompute  # noqa: PLC0415

    assert {h.name for h in world.compute_hosts()} == {"compute01", "compute02"}
    assert {s.host for s in SimCompute(world).services()} == {"compute01", "compute02"}
    faults.fail(world, "network01", "power")
    assert not world.hosts["network01"].power_on
    faults.recover(world, "network01")
    world.clock.advance(world.config.host_boot_seconds + 1)  # type: ignore[attr-defined]
    assert world.hosts["network01"].power_on and not world.hosts["network01"].compute_running
    assert all(world.neutron.is_alive(a) for a in world.neutron.host_agents("network01"))


# ---------------------------------------------------------------------- agent-dead


def test_agent_dead_kills_one_agent_only(world: World) -> None:
    faults.fail(world, "network02", "agent-dead", agent="dhcp")
    world.clock.advance(80)  # type: ignore[attr-defined]
    st = world.neutron
    dead = [a.agent_type for a in st.host_agents("network02") if not st.is_alive(a)]
    assert dead == [n.DHCP]
    faults.fail(world, "network02", "agent-dead")
    assert not agents(world, "network02").running
    faults.recover(world, "network02")
    assert all(a.running for a in st.host_agents("network02"))


# ---------------------------------------------------------------------- forwarding truth


def _legacy(world: World) -> tuple[n.Router, n.Agent, n.Agent]:
    st = world.neutron
    router = next(iter(st.routers.values()))
    old = hosting(world, router.id)
    other = next(a for a in st.agents.values() if a.agent_type == n.L3 and a is not old)
    return router, old, other


def test_forwarding_follows_a_live_binding_after_the_delay(world: World) -> None:
    st = world.neutron
    router, old, other = _legacy(world)
    assert st.forwarding(router.id) == {old.host}
    with world.lock:
        st.remove_router_from_agent(old.id, router.id)  # the agent is live: told at once
        st.add_router_to_agent(other.id, router.id)
    assert st.forwarding(router.id) == set()
    world.clock.advance(1.1)  # type: ignore[attr-defined]
    assert st.forwarding(router.id) == {other.host}


def test_namespace_survives_agent_death_and_unbinding_until_resync(world: World) -> None:
    st = world.neutron
    router, old, other = _legacy(world)
    faults.fail(world, old.host, "agent-dead")
    assert st.forwarding(router.id) == {old.host}  # rule 2: the process died, not the router
    with world.lock:
        st.remove_router_from_agent(old.id, router.id)  # nobody tells the dead agent
        st.add_router_to_agent(other.id, router.id)
    world.clock.advance(2)  # type: ignore[attr-defined]
    assert st.forwarding(router.id) == {old.host, other.host}
    faults.recover(world, old.host)  # the agent resyncs and cleans up
    assert st.forwarding(router.id) == {other.host}


def test_isolated_host_keeps_forwarding_and_cleans_up_when_back(world: World) -> None:
    st = world.neutron
    router, old, other = _legacy(world)
    faults.fail(world, old.host, "isolate")
    with world.lock:
        st.remove_router_from_agent(old.id, router.id)
        st.add_router_to_agent(other.id, router.id)
    world.clock.advance(2)  # type: ignore[attr-defined]
    assert st.forwarding(router.id) == {old.host, other.host}
    faults.recover(world, old.host)
    assert st.forwarding(router.id) == {other.host}


def test_hung_host_forwards_nothing_and_power_off_destroys(world: World) -> None:
    st = world.neutron
    router, old, _ = _legacy(world)
    faults.fail(world, old.host, "hang")
    assert st.forwarding(router.id) == set()
    faults.recover(world, old.host)
    assert st.forwarding(router.id) == {old.host}
    faults.fail(world, old.host, "power")
    assert st.namespaces.get(router.id) is None
    faults.recover(world, old.host)
    world.clock.advance(world.config.host_boot_seconds + 2)  # type: ignore[attr-defined]
    assert st.forwarding(router.id) == {old.host}  # booted, agent resynced, rebuilt


# ---------------------------------------------------------------------- HA (VRRP)


@pytest.fixture
def ha_world() -> World:
    w = World(VirtualClock(), seed=5)
    spec = CloudSpec(hosts=2, instances=4, network_nodes=3, routers=3, networks=2, ha_routers=1)
    build_world(w, spec)
    return w


def _ha(world: World) -> tuple[n.Router, n.Agent, n.Agent]:
    router = next(r for r in world.neutron.routers.values() if r.ha)
    master, standby = world.neutron.l3_agents_of(router.id)
    return router, master, standby


def test_ha_router_is_bound_twice_with_one_master(ha_world: World) -> None:
    st = ha_world.neutron
    router, master, standby = _ha(ha_world)
    assert st.vrrp_masters(router.id) == {master.id}
    assert st.forwarding(router.id) == {master.host}
    assert st.ha_states(router.id) == {master.id: "active", standby.id: "standby"}


def test_vrrp_fails_over_after_the_failover_time(ha_world: World) -> None:
    st = ha_world.neutron
    clock = ha_world.clock
    assert isinstance(clock, VirtualClock)
    router, master, standby = _ha(ha_world)
    faults.fail(ha_world, master.host, "hang")
    assert st.forwarding(router.id) == set()
    clock.advance(2.9)
    assert st.vrrp_masters(router.id) == set()
    clock.advance(0.2)
    assert st.vrrp_masters(router.id) == {standby.id}
    assert st.forwarding(router.id) == {standby.host}
    assert st.ha_states(router.id)[standby.id] == "active"
    assert {p.host_id for p in st.router_ports(router.id)} == {standby.host}
    clock.advance(80)
    assert st.ha_states(router.id)[master.id] == "standby"  # l3_hamode_db's dead-agent rule
    faults.recover(ha_world, master.host)
    assert st.vrrp_masters(router.id) == {standby.id}  # the old master returns as a backup


def test_isolated_master_makes_a_split_brain(ha_world: World) -> None:
    st = ha_world.neutron
    router, master, standby = _ha(ha_world)
    faults.fail(ha_world, master.host, "isolate")
    ha_world.clock.advance(3.1)  # type: ignore[attr-defined]
    assert st.vrrp_masters(router.id) == {master.id, standby.id}
    assert st.forwarding(router.id) == {master.host, standby.host}
    faults.recover(ha_world, master.host)
    assert len(st.vrrp_masters(router.id)) == 1


def test_vrrp_fault_forces_none_or_split_then_clears(ha_world: World) -> None:
    st = ha_world.neutron
    router, master, standby = _ha(ha_world)
    with ha_world.lock:
        st.vrrp_fault(router.id, "none")
    ha_world.clock.advance(10)  # type: ignore[attr-defined]
    assert st.forwarding(router.id) == set()
    with ha_world.lock:
        st.vrrp_fault(router.id, "split")
    assert st.forwarding(router.id) == {master.host, standby.host}
    with ha_world.lock:
        st.vrrp_fault(router.id, "clear")
    assert len(st.vrrp_masters(router.id)) == 1
    legacy = next(r for r in st.routers.values() if not r.ha)
    with pytest.raises(n.NeutronError):
        st.vrrp_fault(legacy.id, "none")


def test_new_binding_on_an_ha_router_becomes_a_standby(ha_world: World) -> None:
    st = ha_world.neutron
    router, master, standby = _ha(ha_world)
    third = next(
        a for a in st.agents.values() if a.agent_type == n.L3 and a not in (master, standby)
    )
    faults.fail(ha_world, standby.host, "power")
    with ha_world.lock:
        st.remove_router_from_agent(standby.id, router.id)
        st.add_router_to_agent(third.id, router.id)
    ha_world.clock.advance(1.1)  # type: ignore[attr-defined]
    assert st.ha_states(router.id) == {master.id: "active", third.id: "standby"}
    assert third.id in st.namespaces[router.id]


# ---------------------------------------------------------------------- routers API and DVR


def test_interfaces_floating_ips_and_delete(world: World) -> None:
    from hastack.sim import neutron_routers as routers  # noqa: PLC0415

    st = world.neutron
    public = next(x for x in st.networks.values() if x.external)
    with world.lock:
        net = st.create_network("extra", "p")
        sub = st.create_subnet(
            net.id, "10.9.9.0/24", name="s", project_id="p", gateway_ip=None, enable_dhcp=False
        )
        router = routers.create_router(st, "r", "p", public.id)
        info = routers.add_interface(st, router.id, subnet_id=sub.id, port_id=None)
    port = st.ports[info["port_id"]]
    assert port.fixed_ips[0]["ip_address"] == "10.9.9.1"
    assert port.host_id == hosting(world, router.id).host
    world.clock.advance(1.1)  # type: ignore[attr-defined]
    assert port.status == "ACTIVE"
    with world.lock:
        vm = st.new_port(net.id, n.OWNER_COMPUTE, "vm", project_id="p")
        fip = routers.create_floating_ip(st, public.id, "p", vm.id)
    assert (fip.router_id, fip.status) == (router.id, "DOWN")
    world.clock.advance(1.1)  # type: ignore[attr-defined]
    assert fip.status == "ACTIVE"
    with pytest.raises(n.NeutronError) as err:
        routers.delete_router(st, router.id)
    assert err.value.kind == "RouterInUse"
    with pytest.raises(n.NeutronError) as err:
        routers.remove_interface(st, router.id, subnet_id=sub.id, port_id=None)
    assert err.value.kind == "RouterInterfaceInUseByFloatingIP"
    with world.lock:
        routers.delete_floating_ip(st, fip.id)
        routers.remove_interface(st, router.id, subnet_id=sub.id, port_id=None)
        routers.delete_router(st, router.id)
    assert router.id not in st.routers and not st.router_ports(router.id)


def test_dvr_build_binds_snat_to_dvr_snat_agents() -> None:
    w = World(VirtualClock(), seed=1)
    build_world(
        w, CloudSpec(hosts=3, instances=4, network_nodes=2, routers=2, networks=1, dvr=True)
    )
    st = w.neutron
    modes = sorted(
        str(a.configurations["agent_mode"]) for a in st.agents.values() if a.agent_type == n.L3
    )
    assert modes == ["dvr"] * 3 + ["dvr_snat"] * 2
    router = next(iter(st.routers.values()))
    assert router.distributed
    (snat,) = st.l3_agents_of(router.id)
    owners = {p.device_owner: p.host_id for p in st.router_ports(router.id)}
    assert owners[n.OWNER_SNAT] == owners[n.OWNER_GATEWAY] == snat.host
    dvr = next(a for a in st.agents.values() if a.configurations.get("agent_mode") == "dvr")
    with pytest.raises(n.NeutronError) as err:
        st.add_router_to_agent(dvr.id, router.id)
    assert err.value.kind == "DVRL3CannotAssignToDvrAgent"
    other = next(
        a
        for a in st.agents.values()
        if a.configurations.get("agent_mode") == "dvr_snat" and a is not snat
    )
    with w.lock:
        st.remove_router_from_agent(snat.id, router.id)
        st.add_router_to_agent(other.id, router.id)
    owners = {p.device_owner: p.host_id for p in st.router_ports(router.id)}
    assert owners[n.OWNER_SNAT] == other.host


def test_without_dvr_compute_hosts_run_no_agents(world: World) -> None:
    assert {a.host for a in world.neutron.agents.values()} == {"network01", "network02"}


# ---------------------------------------------------------------------- SimNetwork


def test_sim_network_reads_and_idempotent_scheduling(ha_world: World) -> None:
    from hastack.domain.network import AgentKind, AgentMode  # noqa: PLC0415
    from hastack.errors import PermanentError, TransientError  # noqa: PLC0415
    from hastack.sim.network_driver import SimNetwork  # noqa: PLC0415

    calls: list[str] = []
    net = SimNetwork(ha_world, faults=calls.append)
    infos = net.agents()
    l3 = [a for a in infos if a.kind is AgentKind.L3]
    assert len(infos) == 12 and {a.mode for a in l3} == {AgentMode.LEGACY}
    agent = ha_world.neutron.agents[l3[0].id]
    assert l3[0].heartbeat_at == ha_world.neutron.heartbeat_at(agent) and l3[0].alive
    router, master, standby = _ha(ha_world)
    rows = {r.id: r for r in net.routers(ha_states=[router.id])}
    assert rows[router.id].ha_states == {master.id: "active", standby.id: "standby"}
    health = net.router_health([router.id, "gone"])
    assert list(health) == [router.id] and health[router.id].floating_ips
    net.add_router(master.id, router.id)  # already there: success
    net.remove_router(standby.id, "no-such-router")
    network = next(x for x in net.networks())
    spare = next(a for a in infos if a.kind is AgentKind.DHCP and a.id not in network.agents)
    net.add_network(spare.id, network.id)
    net.add_network(spare.id, network.id)
    net.remove_network(spare.id, network.id)
    net.remove_network(spare.id, network.id)
    with pytest.raises(PermanentError, match="could not be found"):
        net.add_router("no-such-agent", router.id)
    assert calls[:4] == ["agents", "routers", "router_health", "add_router"]

    def broken(operation: str) -> None:
        raise TransientError(f"neutron: 503 during {operation}")

    with pytest.raises(TransientError):
        SimNetwork(ha_world, faults=broken).remove_router(master.id, router.id)
    assert master.id in ha_world.neutron.l3_bindings[router.id]  # no effect on the world
