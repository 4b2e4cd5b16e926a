"""The network port's conformance suite: one set of tests, every driver.

Backends (ids):

- ``sdk-sim_network``, ``sdk-neutron_oracle``: :class:`NeutronNetwork` over openstacksdk against
  the simulator's Neutron face (a ``hastack sim serve`` process) and a real Neutron 29; time is
  real, waits poll.
- ``inproc``: ``hastack.sim.network_driver.SimNetwork`` over a :class:`World` on a
  :class:`VirtualClock` (skipped while that module does not exist); waits advance the clock.

Each backend gets one small topology for the session, built through its own API (openstacksdk
for the clouds): an external network, a tenant network with a DHCP subnet, and one legacy router
with a gateway and an interface on that subnet (the oracle makes routers slowly, so there is
one).  Tests move that router and network between agents and leave them wherever they end up;
the agent-failure test runs last and brings its node back.  Every assertion is made through
the port.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import yaml

from hastack.clock import VirtualClock
from hastack.domain.network import AgentInfo, AgentKind, AgentMode, RouterInfo
from hastack.drivers.openstack.connection import connect
from hastack.drivers.openstack.network import NeutronNetwork
from hastack.errors import PermanentError, TransientError
from hastack.ports.network import (
    ROUTER_GATEWAY,
    ROUTER_INTERFACE,
    ROUTER_OWNERS,
    NetworkPort,
    RouterHealth,
)
from hastack.sim import faults
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.world import SimConfig, World

from .backends.base import NetworkCloudUnderTest
from .conftest import start_backend, wait_for
from .neutron_helpers import create_public_network

T = TypeVar("T")
NETWORK_NODES = 3
UNKNOWN = "00000000-0000-4000-8000-000000000000"
SCHEDULE_TIMEOUT = 30.0  # a new router / network reaches an agent
ACTIVATE_TIMEOUT = 60.0  # a moved router's ports turn ACTIVE on the new host


@dataclasses.dataclass
class Topology:
    public: str
    network: str
    subnet: str
    router: str
    interface: str  # the router's interface port, on ``subnet``


# -- backends ---------------------------------------------------------------------------------


class Harness:
    """What a test may do to a backend besides calling the port."""

    backend: str
    hosts: list[str]
    agent_down_time: float
    port: NetworkPort
    topo: Topology

    def now(self) -> float:
        raise NotImplementedError

    def fail(self, host: str, mode: str = "agents-down", agent: str | None = None) -> None:
        """``agents-down``: every Neutron agent on ``host`` stops heartbeating; ``agent-dead``:
        only its ``agent`` (l3, dhcp, ovs, metadata) does.  The host stays up."""
        raise NotImplementedError

    def recover(self, host: str) -> None:
        raise NotImplementedError

    def wait(self, fn: Callable[[], T | None], what: str, timeout: float) -> T:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SdkHarness(Harness):
    def __init__(self, cloud: NetworkCloudUnderTest) -> None:
        self.cloud = cloud
        self.backend = cloud.backend
        self.hosts = list(cloud.hosts)
        self.agent_down_time = cloud.agent_down_time
        self.conn = connect(cloud.clouds_yaml, cloud.cloud_name)
        self.port = NeutronNetwork(self.conn)
        self.topo = self._build()

    def _build(self) -> Topology:
        n = self.conn.network
        public = create_public_network(n, "port-public", "172.25.4.0/24")
        private = n.create_network(name="port-net")
        subnet = n.create_subnet(
            network_id=private.id, ip_version=4, cidr="10.19.0.0/24", name="port-sub"
        )
        router = n.create_router(name="port-r1", external_gateway_info={"network_id": public.id})
        interface = n.add_interface_to_router(router, subnet=subnet.id)["port_id"]
        return Topology(public.id, private.id, subnet.id, router.id, interface)

    def now(self) -> float:
        return time.time()

    def fail(self, host: str, mode: str = "agents-down", agent: str | None = None) -> None:
        r = self.cloud.control.fail(host, mode, agent)
        assert r.status_code == 200, r.text

    def recover(self, host: str) -> None:
        r = self.cloud.control.recover(host)
        assert r.status_code == 200, r.text

    def wait(self, fn: Callable[[], T | None], what: str, timeout: float) -> T:
        return wait_for(fn, what, timeout)

    def close(self) -> None:
        self.conn.close()


class InprocHarness(Harness):
    """``SimNetwork`` over a World in virtual time; the topology is made with the simulator's
    own Neutron calls, as its HTTP face would."""

    STEP = 0.1

    def __init__(self, driver_module: Any, routers_module: Any) -> None:
        self.routers = routers_module
        self.clock = VirtualClock()
        self.world = World(self.clock, seed=11, config=SimConfig())
        spec = CloudSpec(hosts=1, instances=0, anti_affinity_groups=0)
        spec.network_nodes, spec.routers, spec.networks = NETWORK_NODES, 0, 0
        build_world(self.world, spec)
        self.backend = "inproc"
        self.hosts = sorted({a.host for a in self.world.neutron.agents.values()})
        self.agent_down_time = float(self.world.neutron.config.agent_down_time)
        self.port = driver_module.SimNetwork(self.world)
        self.topo = self._build()

    def _build(self) -> Topology:
        st = self.world.neutron
        with self.world.lock:
            public = st.create_network("port-public", self.world.admin_project, external=True)
            st.create_subnet(
                public.id,
                "172.25.4.0/24",
                name="port-public-subnet",
                project_id=self.world.admin_project,
                gateway_ip="172.25.4.1",
                enable_dhcp=False,
            )
            private = st.create_network("port-net", self.world.admin_project)
            subnet = st.create_subnet(
                private.id,
                "10.19.0.0/24",
                name="port-sub",
                project_id=self.world.admin_project,
                gateway_ip=None,
                enable_dhcp=True,
            )
            router = self.routers.create_router(st, "port-r1", self.world.admin_project, public.id)
            done = self.routers.add_interface(st, router.id, subnet_id=subnet.id, port_id=None)
            interface = str(done["port_id"])
        return Topology(public.id, private.id, subnet.id, router.id, interface)

    def now(self) -> float:
        return self.clock.now()

    def fail(self, host: str, mode: str = "agents-down", agent: str | None = None) -> None:
        faults.fail(self.world, host, mode, agent=agent)

    def recover(self, host: str) -> None:
        faults.recover(self.world, host)

    def wait(self, fn: Callable[[], T | None], what: str, timeout: float) -> T:
        deadline = self.clock.now() + timeout
        while True:
            found = fn()
            if found:
                return found
            if self.clock.now() >= deadline:
                pytest.fail(f"timed out after {timeout:.0f}s (virtual) waiting for {what}")
            self.clock.advance(self.STEP)


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("sim_network", id="sdk-sim_network"),
        pytest.param("neutron_oracle", id="sdk-neutron_oracle", marks=pytest.mark.oracle),
        pytest.param("inproc", id="inproc"),
    ],
)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    if request.param == "inproc":
        try:
            driver = importlib.import_module("hastack.sim.network_driver")
            routers = importlib.import_module("hastack.sim.neutron_routers")
        except ModuleNotFoundError as exc:
            if not str(exc.name).startswith("hastack.sim."):
                raise
            pytest.skip(f"{exc.name} (the in-process SimNetwork) not written yet")
        yield InprocHarness(driver, routers)
        return
    # One pass: the backend stops when its generator runs out, after the harness is closed.
    for cloud in start_backend(request.param, "neutron_oracle", NETWORK_NODES, tmp_path_factory):
        h = SdkHarness(cloud)
        try:
            yield h
        finally:
            h.close()


# -- helpers ----------------------------------------------------------------------------------


def _agents(h: Harness, kind: AgentKind) -> dict[str, AgentInfo]:
    """host -> that host's agent of ``kind``."""
    return {a.host: a for a in h.port.agents() if a.kind is kind}


def _router(h: Harness) -> RouterInfo:
    (router,) = [r for r in h.port.routers() if r.id == h.topo.router]
    return router


def _router_hosts(h: Harness) -> tuple[str, ...]:
    l3 = {a.id: a.host for a in h.port.agents() if a.kind is AgentKind.L3}
    return tuple(l3[a] for a in _router(h).agents)


def _scheduled_router(h: Harness) -> str:
    """The one host the router is on (it is scheduled when created, with its gateway)."""
    hosts = h.wait(lambda: _router_hosts(h), "router scheduled", SCHEDULE_TIMEOUT)
    assert len(hosts) == 1, hosts
    return hosts[0]


def _network_agents(h: Harness) -> tuple[str, ...]:
    (network,) = [n for n in h.port.networks() if n.id == h.topo.network]
    return network.agents


def _active_on(h: Harness, host: str) -> RouterHealth | None:
    health = h.port.router_health([h.topo.router]).get(h.topo.router)
    if health is None or not health.ports:
        return None
    if all(p.status == "ACTIVE" and p.host == host for p in health.ports):
        return health
    return None


# -- agents -----------------------------------------------------------------------------------


def test_agents_four_live_agents_per_network_node(harness: Harness) -> None:
    agents = harness.port.agents()
    now = harness.now()
    by_host: dict[str, dict[AgentKind, AgentInfo]] = {}
    for a in agents:
        by_host.setdefault(a.host, {})[a.kind] = a
    assert sorted(by_host) == sorted(harness.hosts)
    assert len({a.id for a in agents}) == len(agents) == 4 * NETWORK_NODES
    for host, kinds in by_host.items():
        assert sorted(kinds) == sorted(AgentKind), host
        for a in kinds.values():
            assert (a.alive, a.admin_state_up, a.usable) == (True, True, True), a
            assert a.heartbeat_at is not None, a
            # Heartbeats come every couple of seconds; allow for clock skew and slow CI.
            assert now - (harness.agent_down_time + 10) <= a.heartbeat_at <= now + 5, (a, now)
        assert kinds[AgentKind.L3].mode is AgentMode.LEGACY
        assert {kinds[k].mode for k in AgentKind if k is not AgentKind.L3} == {AgentMode.NONE}
        assert kinds[AgentKind.L3].availability_zone == "nova"
        assert kinds[AgentKind.DHCP].availability_zone == "nova"
        assert kinds[AgentKind.OVS].availability_zone == ""
        assert kinds[AgentKind.METADATA].availability_zone == ""


# -- routers ----------------------------------------------------------------------------------


def test_routers_lists_the_router_with_its_agent(harness: Harness) -> None:
    host = _scheduled_router(harness)
    router = _router(harness)
    assert router.name == "port-r1"
    assert (router.legacy, router.distributed, router.ha) == (True, False, False)
    assert router.agents == (_agents(harness, AgentKind.L3)[host].id,)
    assert router.ha_states == {}
    assert router.availability_zones == ()


def test_ha_states_reads_only_named_routers(harness: Harness) -> None:
    # A legacy router has no per-agent ha_state; an unknown id is not an error and adds nothing.
    routers = harness.port.routers(ha_states=[harness.topo.router, UNKNOWN])
    assert UNKNOWN not in {r.id for r in routers}
    (router,) = [r for r in routers if r.id == harness.topo.router]
    assert router.ha_states == {}


def test_move_legacy_router_is_remove_then_add(harness: Harness) -> None:
    port, router_id = harness.port, harness.topo.router
    old = _scheduled_router(harness)
    l3 = _agents(harness, AgentKind.L3)
    new = next(h for h in sorted(l3) if h != old)
    old_id, new_id = l3[old].id, l3[new].id

    # A legacy router hosted elsewhere cannot be added: Neutron's refusal, naming both.
    with pytest.raises(PermanentError) as refused:
        port.add_router(new_id, router_id)
    assert router_id in str(refused.value) and old_id in str(refused.value)
    assert "already hosted" in str(refused.value)
    assert _router(harness).agents == (old_id,)

    port.add_router(old_id, router_id)  # already there: success, nothing changes
    assert _router(harness).agents == (old_id,)

    port.remove_router(old_id, router_id)
    assert _router(harness).agents == ()
    port.remove_router(old_id, router_id)  # not hosted there any more: success
    port.remove_router(new_id, router_id)

    port.add_router(new_id, router_id)
    assert _router(harness).agents == (new_id,)
    port.add_router(new_id, router_id)
    assert _router(harness).agents == (new_id,)
    assert _router_hosts(harness) == (new,)


# -- router health ----------------------------------------------------------------------------


def test_router_health_follows_a_move_to_a_live_agent(harness: Harness) -> None:
    port, topo = harness.port, harness.topo
    old = _scheduled_router(harness)
    l3 = _agents(harness, AgentKind.L3)
    new = next(h for h in sorted(l3) if h != old)
    port.remove_router(l3[old].id, topo.router)
    port.add_router(l3[new].id, topo.router)

    health = harness.wait(
        lambda: _active_on(harness, new), f"router ports ACTIVE on {new}", ACTIVATE_TIMEOUT
    )
    assert health.router == topo.router
    assert {p.owner for p in health.ports} <= set(ROUTER_OWNERS)
    assert ROUTER_GATEWAY in {p.owner for p in health.ports}
    assert topo.interface in {p.id for p in health.ports}
    (interface,) = [p for p in health.ports if p.id == topo.interface]
    assert interface.owner == ROUTER_INTERFACE


def test_router_health_leaves_out_unknown_routers(harness: Harness) -> None:
    port, topo = harness.port, harness.topo
    assert port.router_health([]) == {}
    assert port.router_health([UNKNOWN]) == {}
    health = port.router_health([UNKNOWN, topo.router, topo.router])
    assert list(health) == [topo.router]
    assert health[topo.router].router == topo.router
    assert isinstance(health[topo.router].floating_ips, tuple)


# -- DHCP -------------------------------------------------------------------------------------


def test_networks_lists_dhcp_networks_with_their_agent(harness: Harness) -> None:
    agents = harness.wait(lambda: _network_agents(harness), "network on an agent", 30)
    dhcp = {a.id for a in harness.port.agents() if a.kind is AgentKind.DHCP}
    assert len(agents) == 1 and agents[0] in dhcp
    networks = {n.id: n for n in harness.port.networks()}
    assert harness.topo.public not in networks  # its only subnet has DHCP off
    assert networks[harness.topo.network].name == "port-net"


def test_move_network_between_dhcp_agents(harness: Harness) -> None:
    port, network_id = harness.port, harness.topo.network
    (old_id,) = harness.wait(lambda: _network_agents(harness), "network on an agent", 30)
    dhcp = _agents(harness, AgentKind.DHCP)
    new_id = next(a.id for _, a in sorted(dhcp.items()) if a.id != old_id)

    port.add_network(old_id, network_id)  # already there: success
    assert _network_agents(harness) == (old_id,)
    port.remove_network(old_id, network_id)
    assert _network_agents(harness) == ()
    port.remove_network(old_id, network_id)  # Neutron's 409: success all the same
    port.add_network(new_id, network_id)
    port.add_network(new_id, network_id)
    assert _network_agents(harness) == (new_id,)


# -- errors -----------------------------------------------------------------------------------


def test_refusals_are_permanent_errors(harness: Harness) -> None:
    port, topo = harness.port, harness.topo
    for call in (
        lambda: port.add_router(UNKNOWN, topo.router),
        lambda: port.remove_router(UNKNOWN, topo.router),
        lambda: port.add_network(UNKNOWN, topo.network),
        lambda: port.remove_network(UNKNOWN, topo.network),
    ):
        with pytest.raises(PermanentError) as refused:
            call()
        assert UNKNOWN in str(refused.value)
    dhcp_agent = next(iter(_agents(harness, AgentKind.DHCP).values()))
    with pytest.raises(PermanentError):
        port.add_router(dhcp_agent.id, topo.router)  # not an L3 agent
    l3_agent = next(iter(_agents(harness, AgentKind.L3).values()))
    with pytest.raises(PermanentError):
        port.add_network(l3_agent.id, topo.network)  # not a DHCP agent
    with pytest.raises(PermanentError):
        port.add_router(l3_agent.id, UNKNOWN)


def test_unreachable_cloud_is_a_transient_error(harness: Harness, tmp_path: pathlib.Path) -> None:
    if not isinstance(harness, SdkHarness):
        pytest.skip("an sdk transport matter")
    clouds = yaml.safe_load(harness.cloud.clouds_yaml.read_text())
    auth = clouds["clouds"][harness.cloud.cloud_name]["auth"]
    auth["auth_url"] = "http://127.0.0.1:9/identity"  # discard port: nothing listens
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    conn = connect(path, harness.cloud.cloud_name)
    try:
        with pytest.raises(TransientError) as failed:
            NeutronNetwork(conn, timeout=5).agents()
        assert str(failed.value).startswith("neutron")
    finally:
        conn.close()


# -- agent failure (last: they take agents down and back) ---------------------------------------


def test_dead_l3_agent_reads_dead_alone(harness: Harness) -> None:
    victim = harness.hosts[0]
    timeout = harness.agent_down_time * 2 + 20

    def on_victim() -> dict[AgentKind, AgentInfo]:
        return {a.kind: a for a in harness.port.agents() if a.host == victim}

    def l3_dead() -> dict[AgentKind, AgentInfo] | None:
        agents = on_victim()
        return agents if not agents[AgentKind.L3].alive else None

    harness.fail(victim, "agent-dead", "l3")
    try:
        agents = harness.wait(l3_dead, f"{victim}'s L3 agent dead", timeout)
        others = [a for kind, a in agents.items() if kind is not AgentKind.L3]
        assert len(others) == 3 and all(a.alive for a in others), others
    finally:
        harness.recover(victim)
    harness.wait(lambda: on_victim()[AgentKind.L3].alive, f"{victim}'s L3 agent back", timeout)


def test_agents_down_read_dead_then_alive_again(harness: Harness) -> None:
    victim = harness.hosts[-1]
    timeout = harness.agent_down_time * 2 + 20

    def on_victim() -> list[AgentInfo]:
        return [a for a in harness.port.agents() if a.host == victim]

    def all_dead() -> list[AgentInfo] | None:
        agents = on_victim()
        return agents if agents and not any(a.alive for a in agents) else None

    harness.fail(victim)
    try:
        dead = harness.wait(all_dead, f"{victim}'s agents dead", timeout)
        assert len(dead) == 4
        assert all(a.admin_state_up and not a.usable for a in dead)
        others = [a for a in harness.port.agents() if a.host != victim]
        assert len(others) == 4 * (NETWORK_NODES - 1)
        assert all(a.alive for a in others), [a for a in others if not a.alive]
        stale = harness.now() - harness.agent_down_time
        assert all(a.heartbeat_at is not None and a.heartbeat_at < stale for a in dead), dead
    finally:
        harness.recover(victim)
    harness.wait(
        lambda: all(a.alive for a in on_victim()), f"{victim}'s agents alive again", timeout
    )
