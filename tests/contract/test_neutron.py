"""Neutron's agents and their router / DHCP scheduling, the same tests against the simulator's
Neutron face (``sim_network``) and a real Neutron 29 (``neutron_oracle``), through openstacksdk.

The session builds one small topology per backend (an external network, a tenant network with a
DHCP subnet, one router with a gateway) and the tests move its router and network between agents.
The oracle runs with automatic failover off, so nothing moves by itself; the agent-failure test
runs last and brings its node back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests
import yaml

from .backends.base import NetworkCloudUnderTest
from .conftest import _connect, start_backend, wait_for
from .neutron_helpers import create_public_network

BACKENDS = ["sim_network", "neutron_oracle"]
NETWORK_NODES = 3

L3, DHCP, OVS, METADATA = "L3 agent", "DHCP agent", "Open vSwitch agent", "Metadata agent"
BINARIES = {
    L3: "neutron-l3-agent",
    DHCP: "neutron-dhcp-agent",
    OVS: "neutron-openvswitch-agent",
    METADATA: "neutron-metadata-agent",
}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(b, id=b, marks=[pytest.mark.oracle] if b == "neutron_oracle" else [])
        for b in BACKENDS
    ],
)
def netcloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetworkCloudUnderTest]:
    yield from start_backend(request.param, "neutron_oracle", NETWORK_NODES, tmp_path_factory)


@pytest.fixture(scope="session")
def nconn(netcloud: NetworkCloudUnderTest) -> Iterator[openstack.connection.Connection]:
    c = _connect(netcloud, netcloud.cloud_name)
    yield c
    c.close()


@pytest.fixture(scope="session")
def ndemo(netcloud: NetworkCloudUnderTest) -> Iterator[openstack.connection.Connection]:
    name = f"{netcloud.cloud_name}-demo"
    assert name in yaml.safe_load(netcloud.clouds_yaml.read_text())["clouds"]
    c = _connect(netcloud, name)
    yield c
    c.close()


class Net:
    """Raw Neutron calls through the sdk's session (status codes and bodies unprocessed)."""

    def __init__(self, conn: openstack.connection.Connection) -> None:
        self.conn = conn

    def get(self, url: str) -> requests.Response:
        return self.conn.network.get(url)

    def post(self, url: str, body: Any) -> requests.Response:
        return self.conn.network.post(url, json=body)

    def delete(self, url: str) -> requests.Response:
        return self.conn.network.delete(url)

    def ok(self, url: str) -> Any:
        r = self.get(url)
        assert r.status_code == 200, r.text
        return r.json()

    def agents(self, **query: str) -> list[dict[str, Any]]:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return self.ok(f"/agents?{q}")["agents"]

    def agent(self, host: str, agent_type: str) -> dict[str, Any]:
        (agent,) = [a for a in self.agents(host=host) if a["agent_type"] == agent_type]
        return agent

    def l3_hosts(self, router_id: str) -> list[str]:
        return sorted(a["host"] for a in self.ok(f"/routers/{router_id}/l3-agents")["agents"])

    def dhcp_hosts(self, network_id: str) -> list[str]:
        return sorted(a["host"] for a in self.ok(f"/networks/{network_id}/dhcp-agents")["agents"])


def neutron_error(r: requests.Response, status: int, kind: str) -> str:
    """Assert a NeutronError body of ``kind`` with ``status``; return its message."""
    assert r.status_code == status, r.text
    err = r.json()["NeutronError"]
    assert err["type"] == kind, err
    assert isinstance(err["message"], str) and err["message"]
    assert "detail" in err
    return str(err["message"])


@dataclasses.dataclass
class Topology:
    public: str
    network: str
    router: str


@pytest.fixture(scope="session")
def net(nconn: openstack.connection.Connection) -> Net:
    return Net(nconn)


@pytest.fixture(scope="session")
def topo(nconn: openstack.connection.Connection, net: Net) -> Topology:
    """One external network, one tenant network with a DHCP subnet, one router with a gateway:
    the only router the session creates (the oracle makes routers slowly)."""
    n = nconn.network
    public = create_public_network(n, "contract-public", "172.24.4.0/24")
    private = n.create_network(name="contract-net")
    n.create_subnet(network_id=private.id, ip_version=4, cidr="10.9.0.0/24", name="contract-sub")
    router = n.create_router(name="contract-r1", external_gateway_info={"network_id": public.id})
    return Topology(public=public.id, network=private.id, router=router.id)


# ---------------------------------------------------------------------- agents


def test_every_network_node_runs_four_live_agents(
    netcloud: NetworkCloudUnderTest, net: Net
) -> None:
    agents = net.agents()
    by_host: dict[str, dict[str, dict[str, Any]]] = {}
    for a in agents:
        by_host.setdefault(a["host"], {})[a["agent_type"]] = a
    assert sorted(by_host) == sorted(netcloud.hosts)
    for host, kinds in by_host.items():
        assert sorted(kinds) == sorted(BINARIES), host
        for agent_type, a in kinds.items():
            assert a["binary"] == BINARIES[agent_type]
            assert a["alive"] is True, a
            assert a["admin_state_up"] is True, a
        assert kinds[L3]["configurations"]["agent_mode"] == "legacy"
        assert kinds[L3]["topic"] == "l3_agent"
        assert kinds[DHCP]["topic"] == "dhcp_agent"
        assert kinds[L3]["availability_zone"] == "nova"
        assert kinds[DHCP]["availability_zone"] == "nova"
        assert kinds[OVS]["availability_zone"] is None
        assert kinds[METADATA]["availability_zone"] is None


def test_agent_filters_and_show(net: Net) -> None:
    l3 = net.agents(agent_type="L3 agent")
    assert {a["agent_type"] for a in l3} == {L3}
    assert len(l3) == NETWORK_NODES
    shown = net.ok(f"/agents/{l3[0]['id']}")["agent"]
    assert shown["id"] == l3[0]["id"] and shown["host"] == l3[0]["host"]


def test_member_sees_no_agents(ndemo: openstack.connection.Connection) -> None:
    # Agents are admin only, but Neutron filters a list by policy rather than refusing it.
    r = Net(ndemo).get("/agents")
    assert r.status_code == 200, r.text
    assert r.json() == {"agents": []}


def test_unknown_ids_are_404(net: Net, topo: Topology) -> None:
    msg = neutron_error(net.get(f"/agents/{UNKNOWN}"), 404, "AgentNotFound")
    assert msg == f"Agent {UNKNOWN} could not be found."
    neutron_error(net.get(f"/routers/{UNKNOWN}/l3-agents"), 404, "RouterNotFound")
    # Unlike a router's l3-agents, an unknown network's dhcp-agents is an empty list.
    assert net.ok(f"/networks/{UNKNOWN}/dhcp-agents") == {"agents": []}
    neutron_error(net.get(f"/agents/{UNKNOWN}/l3-routers"), 404, "AgentNotFound")
    l3 = net.agents(agent_type="L3 agent")[0]
    r = net.post(f"/agents/{l3['id']}/l3-routers", {"router_id": UNKNOWN})
    neutron_error(r, 404, "RouterNotFound")


# ---------------------------------------------------------------------- router scheduling


def test_router_with_gateway_is_scheduled_to_one_l3_agent(net: Net, topo: Topology) -> None:
    hosts = wait_for(lambda: net.l3_hosts(topo.router), "router scheduled", 30)
    assert len(hosts) == 1
    (agent,) = net.ok(f"/routers/{topo.router}/l3-agents")["agents"]
    assert agent["agent_type"] == L3
    routers = net.ok(f"/agents/{agent['id']}/l3-routers")["routers"]
    assert [r["id"] for r in routers] == [topo.router]


def test_move_router_between_l3_agents(net: Net, topo: Topology) -> None:
    (old,) = wait_for(lambda: net.l3_hosts(topo.router), "router scheduled", 30)
    new, third = [h for h in sorted(a["host"] for a in net.agents(agent_type=L3)) if h != old]
    old_id, new_id = net.agent(old, L3)["id"], net.agent(new, L3)["id"]

    # A legacy router hosted by one agent cannot be added to another.
    r = net.post(f"/agents/{new_id}/l3-routers", {"router_id": topo.router})
    msg = neutron_error(r, 409, "RouterHostedByL3Agent")
    assert topo.router in msg and old_id in msg

    r = net.delete(f"/agents/{old_id}/l3-routers/{topo.router}")
    assert r.status_code == 204, r.text
    assert net.l3_hosts(topo.router) == []
    r = net.post(f"/agents/{new_id}/l3-routers", {"router_id": topo.router})
    assert r.status_code == 201, r.text
    assert net.l3_hosts(topo.router) == [new]
    rids = [x["id"] for x in net.ok(f"/agents/{new_id}/l3-routers")["routers"]]
    assert rids == [topo.router]
    assert net.ok(f"/agents/{old_id}/l3-routers")["routers"] == []

    third_id = net.agent(third, L3)["id"]
    r = net.post(f"/agents/{third_id}/l3-routers", {"router_id": topo.router})
    msg = neutron_error(r, 409, "RouterHostedByL3Agent")
    assert new_id in msg


def test_router_to_non_l3_agent_is_404(net: Net, topo: Topology) -> None:
    dhcp = net.agents(agent_type="DHCP agent")[0]
    r = net.post(f"/agents/{dhcp['id']}/l3-routers", {"router_id": topo.router})
    neutron_error(r, 404, "InvalidL3Agent")


# ---------------------------------------------------------------------- DHCP scheduling


def test_move_network_between_dhcp_agents(net: Net, topo: Topology) -> None:
    (old,) = wait_for(lambda: net.dhcp_hosts(topo.network), "network on a DHCP agent", 30)
    new = next(h for h in sorted(a["host"] for a in net.agents(agent_type=DHCP)) if h != old)
    old_id, new_id = net.agent(old, DHCP)["id"], net.agent(new, DHCP)["id"]
    nets = [x["id"] for x in net.ok(f"/agents/{old_id}/dhcp-networks")["networks"]]
    assert topo.network in nets

    # Already hosted by that very agent: 409.
    r = net.post(f"/agents/{old_id}/dhcp-networks", {"network_id": topo.network})
    msg = neutron_error(r, 409, "NetworkHostedByDHCPAgent")
    assert topo.network in msg

    r = net.delete(f"/agents/{old_id}/dhcp-networks/{topo.network}")
    assert r.status_code == 204, r.text
    assert net.dhcp_hosts(topo.network) == []
    r = net.post(f"/agents/{new_id}/dhcp-networks", {"network_id": topo.network})
    assert r.status_code == 201, r.text
    assert net.dhcp_hosts(topo.network) == [new]
    assert topo.network not in [
        x["id"] for x in net.ok(f"/agents/{old_id}/dhcp-networks")["networks"]
    ]

    # Removing it from an agent that does not host it: 409.
    r = net.delete(f"/agents/{old_id}/dhcp-networks/{topo.network}")
    neutron_error(r, 409, "NetworkNotHostedByDhcpAgent")


def test_network_to_non_dhcp_agent_is_404(net: Net, topo: Topology) -> None:
    l3 = net.agents(agent_type="L3 agent")[0]
    r = net.post(f"/agents/{l3['id']}/dhcp-networks", {"network_id": topo.network})
    neutron_error(r, 404, "InvalidDHCPAgent")


# ---------------------------------------------------------------------- agent failure


def test_agents_down_then_recovered(netcloud: NetworkCloudUnderTest, net: Net) -> None:
    victim = netcloud.hosts[-1]
    timeout = netcloud.agent_down_time * 2 + 20
    r = netcloud.control.fail(victim, "agents-down")
    assert r.status_code == 200, r.text
    assert r.json() == {"host": victim, "mode": "agents-down"}
    try:

        def victim_dead() -> list[dict[str, Any]] | None:
            agents = net.agents(host=victim)
            return agents if agents and not any(a["alive"] for a in agents) else None

        dead = wait_for(victim_dead, f"{victim}'s agents alive=false", timeout)
        assert len(dead) == 4
        assert all(a["admin_state_up"] for a in dead)
        others = [a for a in net.agents() if a["host"] != victim]
        assert len(others) == 4 * (NETWORK_NODES - 1)
        assert all(a["alive"] for a in others), [a for a in others if not a["alive"]]
    finally:
        r = netcloud.control.recover(victim)
        assert r.status_code == 200, r.text
    wait_for(
        lambda: all(a["alive"] for a in net.agents(host=victim)),
        f"{victim}'s agents alive again",
        timeout,
    )
