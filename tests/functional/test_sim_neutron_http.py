"""The simulator's Neutron face as openstacksdk sees it, served in process on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
import requests
from openstack import config as os_config
from openstack import exceptions as sdk_exc

from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSim]:
    workdir: Path = tmp_path_factory.mktemp("neutron")
    spec = CloudSpec(
        hosts=2, instances=4, seed=7, network_nodes=3, routers=4, networks=3, ha_routers=1
    )
    options = SimOptions(spec=spec, workdir=workdir, bmc=False, probe=False)
    with RunningSim(options) as running:
        yield running


def connect(sim: RunningSim, cloud: str) -> openstack.connection.Connection:
    config = os_config.OpenStackConfig(config_files=[str(sim.files["clouds_yaml"])])
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


@pytest.fixture(scope="module")
def conn(sim: RunningSim) -> Iterator[openstack.connection.Connection]:
    c = connect(sim, "hastack-sim")
    yield c
    c.close()


def test_agents_list_and_filters(conn: openstack.connection.Connection) -> None:
    agents = list(conn.network.agents())
    assert len(agents) == 12
    l3 = list(conn.network.agents(agent_type="L3 agent"))
    assert {a.host for a in l3} == {"network01", "network02", "network03"}
    assert all(a.is_alive and a.is_admin_state_up for a in l3)
    assert l3[0].configuration["agent_mode"] == "legacy"
    assert len(list(conn.network.agents(host="network02"))) == 4
    page = list(conn.network.agents(limit=5))  # the sdk follows agents_links
    assert len(page) == 12


def test_router_moves_between_agents(conn: openstack.connection.Connection) -> None:
    router = next(r for r in conn.network.routers() if not r.is_ha)
    (old,) = list(conn.network.routers_hosting_l3_agents(router))
    other = next(a for a in conn.network.agents(agent_type="L3 agent") if a.id != old.id)
    # openstacksdk's add_router_to_agent does not raise on an error status: look at the wire.
    resp = conn.network.post(f"/agents/{other.id}/l3-routers", json={"router_id": router.id})
    assert resp.status_code == 409
    assert resp.json()["NeutronError"]["type"] == "RouterHostedByL3Agent"
    # An agent listed under a router keeps that listing's base_path in openstacksdk: pass its id.
    conn.network.remove_router_from_agent(old.id, router)
    ports = list(conn.network.ports(device_id=router.id))
    assert {p.status for p in ports} == {"DOWN"}
    conn.network.add_router_to_agent(other, router)
    assert [a.id for a in conn.network.routers_hosting_l3_agents(router)] == [other.id]
    assert router.id in {r.id for r in conn.network.agent_hosted_routers(other)}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ports = list(conn.network.ports(device_id=router.id))
        if {p.status for p in ports} == {"ACTIVE"}:
            break
        time.sleep(0.1)
    assert {p.status for p in ports} == {"ACTIVE"}
    assert {p.binding_host_id for p in ports} == {other.host}
    fips = list(conn.network.ips(router_id=router.id))
    assert fips and {f.status for f in fips} == {"ACTIVE"}


def test_dhcp_agents_of_a_network(conn: openstack.connection.Connection) -> None:
    net = next(conn.network.networks(name="net-1"))
    hosting = list(conn.network.network_hosting_dhcp_agents(net))
    assert len(hosting) == 2
    spare = next(
        a
        for a in conn.network.agents(agent_type="DHCP agent")
        if a.id not in {h.id for h in hosting}
    )
    conn.network.add_dhcp_agent_to_network(spare, net)
    assert len(list(conn.network.network_hosting_dhcp_agents(net))) == 3
    assert net.id in {x.id for x in conn.network.dhcp_agent_hosting_networks(spare)}
    conn.network.remove_dhcp_agent_from_network(spare, net)
    assert len(list(conn.network.network_hosting_dhcp_agents(net))) == 2


def test_listings_and_errors(conn: openstack.connection.Connection) -> None:
    assert len(list(conn.network.networks())) == 4  # public + 3
    assert len(list(conn.network.subnets())) == 4
    gateways = list(conn.network.ports(device_owner="network:router_gateway"))
    assert len(gateways) == 4
    assert len(list(conn.network.ips())) == 4
    with pytest.raises(sdk_exc.NotFoundException) as err:
        conn.network.get_router("no-such-router")
    assert "could not be found" in str(err.value)


def test_agent_admin_state_and_member_policy(
    sim: RunningSim, conn: openstack.connection.Connection
) -> None:
    agent = next(conn.network.agents(agent_type="L3 agent", host="network03"))
    updated = conn.network.update_agent(agent, is_admin_state_up=False)
    assert updated.is_admin_state_up is False
    conn.network.update_agent(agent, is_admin_state_up=True)
    demo = connect(sim, "hastack-sim-demo")
    try:
        # Admin only, but Neutron filters a list by policy: a member gets an empty list.
        assert list(demo.network.agents()) == []
    finally:
        demo.close()


def test_ports_filter_on_several_device_ids(conn: openstack.connection.Connection) -> None:
    ids = [r.id for r in conn.network.routers()][:2]
    resp = conn.network.get(f"/ports?device_id={ids[0]}&device_id={ids[1]}")
    ports = resp.json()["ports"]
    assert {p["device_id"] for p in ports} == set(ids)
    owners = "device_owner=network:router_gateway&device_owner=network:router_interface"
    resp = conn.network.get(f"/ports?device_id={ids[0]}&{owners}")
    assert {p["device_owner"] for p in resp.json()["ports"]} == {
        "network:router_gateway",
        "network:router_interface",
    }
    fips = conn.network.get(f"/floatingips?router_id={ids[0]}&router_id={ids[1]}").json()
    assert {f["router_id"] for f in fips["floatingips"]} == set(ids)


def test_router_lifecycle_interfaces_and_floating_ips(
    conn: openstack.connection.Connection,
) -> None:
    public = next(conn.network.networks(name="public"))
    net = conn.network.create_network(name="lifecycle")
    sub = conn.network.create_subnet(network_id=net.id, cidr="10.77.0.0/24", ip_version=4)
    router = conn.network.create_router(name="lc", external_gateway_info={"network_id": public.id})
    conn.network.add_interface_to_router(router, subnet_id=sub.id)
    iface = next(conn.network.ports(device_id=router.id, device_owner="network:router_interface"))
    assert iface.fixed_ips[0]["ip_address"] == sub.gateway_ip
    resp = conn.network.delete(f"/routers/{router.id}")
    assert resp.status_code == 409
    assert resp.json()["NeutronError"]["type"] == "RouterInUse"
    updated = conn.network.update_router(router, name="lc2", admin_state_up=False)
    assert (updated.name, updated.is_admin_state_up) == ("lc2", False)
    fip = conn.network.create_ip(floating_network_id=public.id)
    assert fip.router_id is None and fip.status == "DOWN"
    resp = conn.network.put(f"/floatingips/{fip.id}", json={"floatingip": {"port_id": "nope"}})
    assert resp.json()["NeutronError"]["type"] == "PortNotFound"
    conn.network.delete_ip(fip)
    conn.network.remove_interface_from_router(router, subnet_id=sub.id)
    conn.network.delete_router(router)
    with pytest.raises(sdk_exc.NotFoundException):
        conn.network.get_router(router.id)


def test_ha_router_l3_agents_and_vrrp_control(
    sim: RunningSim, conn: openstack.connection.Connection
) -> None:
    router = next(r for r in conn.network.routers() if r.is_ha)
    states = {a.host: a.ha_state for a in conn.network.routers_hosting_l3_agents(router)}
    assert sorted(states.values()) == ["active", "standby"]
    split = requests.post(
        f"{sim.url}/control/routers/{router.id}/vrrp", json={"state": "split"}, timeout=10
    ).json()
    assert sorted(split["forwarding"]) == sorted(states)
    cleared = requests.post(
        f"{sim.url}/control/routers/{router.id}/vrrp", json={"state": "clear"}, timeout=10
    ).json()
    assert len(cleared["masters"]) == 1
    created = conn.network.create_router(name="ha2", is_ha=True)
    assert created.is_ha
    assert len(list(conn.network.routers_hosting_l3_agents(created))) == 2
    conn.network.delete_router(created)


def test_member_may_not_create_ha_routers(sim: RunningSim) -> None:
    demo = connect(sim, "hastack-sim-demo")
    try:
        resp = demo.network.post("/routers", json={"router": {"name": "x", "ha": True}})
        assert resp.status_code == 403
        assert resp.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    finally:
        demo.close()
