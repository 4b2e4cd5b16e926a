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
    assert world.hosts["network01"].service.status == "disabled"  # no VMs scheduled there
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


def test_agent_dead_keeps_the_host_up(world: World) -> None:
    faults.fail(world, "network02", "agent-dead")
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
