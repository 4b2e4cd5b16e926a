"""Flavors and extra specs, aggregates, availability zones, server groups, migrations.

Real Nova (34.0.0) facts pinned here:
- Flavor extra specs are validated (``hw:cpu_policy: bogus`` is a 400) and appear in the
  flavor body from 2.61; a duplicate flavor name is a 409.
- Adding a host to an aggregate mirrors the aggregate (same uuid) onto the host's
  resource provider in Placement.
- A host that has servers cannot join or leave an aggregate that would change its
  availability zone (409 with an explanation); an empty host can.
- ``os-availability-zone/detail`` lists compute hosts under their zone and the control
  services under ``internal``; the plain list has ``hosts: null``.
- Anti-affinity groups spread their members over distinct hosts and list them.
"""

from __future__ import annotations

import uuid

import pytest

from .conftest import BOOT_TIMEOUT, wait_for

# -- flavors ------------------------------------------------------------------------------


def test_flavor_with_extra_specs(conn, ops):
    name = f"contract-{uuid.uuid4().hex[:8]}"
    flavor = conn.compute.create_flavor(name=name, ram=512, vcpus=2, disk=5)
    try:
        specs = {"hw:cpu_policy": "shared", "trait:CUSTOM_HA": "required"}
        conn.compute.create_flavor_extra_specs(flavor, specs)
        assert conn.compute.fetch_flavor_extra_specs(flavor).extra_specs == specs

        shown = ops.get(f"/flavors/{flavor.id}", "2.61").json()["flavor"]
        assert (shown["name"], shown["ram"], shown["vcpus"], shown["disk"]) == (name, 512, 2, 5)
        assert shown["extra_specs"] == specs
        assert "extra_specs" not in ops.get(f"/flavors/{flavor.id}", "2.60").json()["flavor"]

        r = ops.post(
            f"/flavors/{flavor.id}/os-extra_specs",
            {"extra_specs": {"hw:cpu_policy": "bogus"}},
            "2.86",
        )
        assert r.status_code == 400
        assert r.json()["badRequest"]["message"] == (
            "Validation failed; 'bogus' is not one of: dedicated, shared, mixed."
        )

        r = ops.post("/flavors", {"flavor": {"name": name, "ram": 1, "vcpus": 1, "disk": 1}})
        assert r.status_code == 409
        assert r.json()["conflictingRequest"]["message"] == (
            f"Flavor with name {name} already exists."
        )
    finally:
        conn.compute.delete_flavor(flavor)


def test_server_embeds_flavor_extra_specs(conn, ops, servers):
    flavor = conn.compute.create_flavor(
        name=f"contract-{uuid.uuid4().hex[:8]}", ram=256, vcpus=1, disk=1
    )
    try:
        conn.compute.create_flavor_extra_specs(flavor, {"hw:cpu_policy": "shared"})
        server = servers.create(flavorRef=flavor.id)
        assert ops.server(server["id"], "2.47")["flavor"]["extra_specs"] == {
            "hw:cpu_policy": "shared"
        }
    finally:
        conn.compute.delete_flavor(flavor)


# -- aggregates and availability zones ----------------------------------------------------


@pytest.fixture
def aggregate(conn):
    created = []

    def make(**attrs):
        agg = conn.compute.create_aggregate(name=f"contract-{uuid.uuid4().hex[:8]}", **attrs)
        created.append(agg)
        return agg

    yield make
    for made in created:
        agg = conn.compute.get_aggregate(made.id)
        for host in agg.hosts or []:
            conn.compute.remove_host_from_aggregate(agg, host)
        conn.compute.delete_aggregate(agg)


def test_aggregate_host_and_metadata_mirrored_to_placement(conn, ops, aggregate, cloud):
    host = cloud.hosts[0]
    agg = aggregate()
    agg = conn.compute.add_host_to_aggregate(agg, host)
    assert agg.hosts == [host]
    agg = conn.compute.set_aggregate_metadata(agg, {"ha:segment": "rack1"})
    assert agg.metadata == {"ha:segment": "rack1"}

    shown = ops.get(f"/os-aggregates/{agg.id}", "2.41").json()["aggregate"]
    assert shown["hosts"] == [host]
    assert shown["metadata"] == {"ha:segment": "rack1"}
    agg_uuid = shown["uuid"]  # (the sdk's action responses leave Aggregate.uuid unset)

    rp = next(conn.placement.resource_providers(name=host))
    r = conn.placement.get(f"/resource_providers/{rp.id}/aggregates", microversion="1.19")
    assert agg_uuid in r.json()["aggregates"]

    r = ops.post(f"/os-aggregates/{agg.id}/action", {"add_host": {"host": host}})
    assert r.status_code == 409
    assert r.json()["conflictingRequest"]["message"] == (
        f"Aggregate {agg.id} already has host {host}."
    )
    r = ops.post(f"/os-aggregates/{agg.id}/action", {"add_host": {"host": "nope"}})
    assert r.status_code == 404
    assert r.json()["itemNotFound"]["message"] == "Compute host nope could not be found."

    conn.compute.remove_host_from_aggregate(agg, host)
    r = conn.placement.get(f"/resource_providers/{rp.id}/aggregates", microversion="1.19")
    assert agg_uuid not in r.json()["aggregates"]


def test_availability_zone_aggregate(conn, ops, aggregate, servers):
    zone = f"az-{uuid.uuid4().hex[:6]}"
    agg = aggregate(availability_zone=zone)
    assert agg.availability_zone == zone

    busy = ops.cloud.hosts[0]
    servers.create(host=busy)
    r = ops.post(f"/os-aggregates/{agg.id}/action", {"add_host": {"host": busy}})
    assert r.status_code == 409
    assert (
        "the availability zone of the host would change from 'None' to "
        f"'{zone}' but the host already has 1 instance(s)"
    ) in (r.json()["conflictingRequest"]["message"])

    host = ops.empty_host(exclude=(busy,))
    agg = conn.compute.add_host_to_aggregate(agg, host)
    assert agg.metadata["availability_zone"] == zone

    zones = {z.name: z for z in conn.compute.availability_zones(details=True)}
    assert host in zones[zone].hosts
    assert "nova-compute" in zones[zone].hosts[host]
    assert host not in zones["nova"].hosts
    server = servers.create(availability_zone=zone, mv="2.95")
    assert server["OS-EXT-SRV-ATTR:host"] == host
    assert server["OS-EXT-AZ:availability_zone"] == zone


def test_availability_zone_detail(ops, cloud):
    info = ops.get("/os-availability-zone/detail").json()["availabilityZoneInfo"]
    zones = {z["zoneName"]: z for z in info}
    assert zones["nova"]["zoneState"] == {"available": True}
    assert set(cloud.hosts) <= set(zones["nova"]["hosts"])
    svc = zones["nova"]["hosts"][cloud.hosts[0]]["nova-compute"]
    assert (svc["available"], svc["active"]) == (True, True)
    assert "updated_at" in svc
    assert {"nova-conductor", "nova-scheduler"} <= {
        b for h in zones["internal"]["hosts"].values() for b in h
    }

    plain = ops.get("/os-availability-zone").json()["availabilityZoneInfo"]
    assert {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None} in plain
    assert "internal" not in {z["zoneName"] for z in plain}


# -- server groups ------------------------------------------------------------------------


def test_anti_affinity_group_spreads_members(conn, ops, servers):
    group = conn.compute.create_server_group(name="contract-aa", policy="anti-affinity")
    try:
        assert group.policy == "anti-affinity"
        first = servers.create(group=group.id, mv="2.95")
        second = servers.create(group=group.id, mv="2.95")
        assert first["OS-EXT-SRV-ATTR:host"] != second["OS-EXT-SRV-ATTR:host"]

        shown = ops.get(f"/os-server-groups/{group.id}", "2.64").json()["server_group"]
        assert (shown["name"], shown["policy"], shown["rules"]) == (
            "contract-aa",
            "anti-affinity",
            {},
        )
        assert set(shown["members"]) == {first["id"], second["id"]}
        assert set(conn.compute.get_server_group(group.id).member_ids) == {
            first["id"],
            second["id"],
        }
        legacy = ops.get(f"/os-server-groups/{group.id}", "2.1").json()["server_group"]
        assert legacy["policies"] == ["anti-affinity"]
    finally:
        servers.cleanup()
        servers.ids.clear()
        conn.compute.delete_server_group(group)


def test_anti_affinity_refuses_a_second_member_on_the_same_host(conn, ops, servers, cloud):
    group = conn.compute.create_server_group(name="contract-aa2", policy="anti-affinity")
    try:
        host = cloud.hosts[1]
        servers.create(group=group.id, host=host)
        second = servers.create(group=group.id, host=host, wait=False)
        s = wait_for(
            lambda: (x := ops.server(second["id"]))["status"] != "BUILD" and x,
            "second member to leave BUILD",
            BOOT_TIMEOUT,
        )
        assert s["status"] == "ERROR"
        assert "No valid host was found" in s["fault"]["message"]
    finally:
        servers.cleanup()
        servers.ids.clear()
        conn.compute.delete_server_group(group)


# -- migrations ---------------------------------------------------------------------------


def test_migrations_filters_without_matches(ops):
    assert ops.migrations(migration_type="evacuation", source_compute="no-such-host") == []
    # Filter values are not validated: an unknown type simply matches nothing.
    r = ops.get("/os-migrations?migration_type=bogus", "2.80")
    assert r.status_code == 200
    assert r.json() == {"migrations": []}
