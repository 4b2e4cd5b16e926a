"""Placement as Nova feeds it: one resource provider per compute host (named after the
host, uuid = the hypervisor id), VCPU/MEMORY_MB/DISK_GB inventories, allocations keyed
by server uuid that move on evacuation.

Real Placement (16.0.0) facts pinned here: the root document is public and advertises
``max_version`` (1.39 here); ``GET /allocations/{consumer}`` from 1.38 includes
``consumer_type``; usages change by exactly the flavor's amounts on boot and back on
delete.
"""

from __future__ import annotations

from .conftest import ACTION_TIMEOUT, wait_for


def _rp(conn, host):
    (rp,) = list(conn.placement.resource_providers(name=host))
    return rp


def _usages(conn, rp_id):
    r = conn.placement.get(f"/resource_providers/{rp_id}/usages")
    assert r.status_code == 200, r.text
    return r.json()["usages"]


def test_root_document_is_versioned(conn):
    r = conn.placement.get("/")
    assert r.status_code == 200
    (version,) = r.json()["versions"]
    assert (version["id"], version["min_version"], version["status"]) == ("v1.0", "1.0", "CURRENT")
    major, minor = (int(x) for x in version["max_version"].split("."))
    assert (major, minor) >= (1, 39)


def test_one_provider_per_compute_host(conn, ops, cloud):
    rps = {rp.name: rp for rp in conn.placement.resource_providers()}
    assert set(cloud.hosts) <= set(rps)
    hyps = {
        h["hypervisor_hostname"]: h["id"]
        for h in ops.get("/os-hypervisors", "2.88").json()["hypervisors"]
    }
    for host in cloud.hosts:
        rp = rps[host]
        assert rp.id == hyps[host]  # the compute node uuid
        assert rp.root_provider_id == rp.id
        assert rp.parent_provider_id is None


def test_inventories(conn, cloud):
    rp = _rp(conn, cloud.hosts[0])
    inventories = {i.resource_class: i for i in conn.placement.resource_provider_inventories(rp)}
    assert {"VCPU", "MEMORY_MB", "DISK_GB"} <= set(inventories)
    for rc in ("VCPU", "MEMORY_MB", "DISK_GB"):
        inv = inventories[rc]
        assert inv.total > 0
        assert inv.min_unit == 1 and inv.step_size == 1
        assert inv.max_unit <= inv.total
        assert inv.allocation_ratio > 0
        assert 0 <= inv.reserved < inv.total


def test_usages_follow_server_boot_and_delete(conn, ops, servers, cloud):
    host = cloud.hosts[2]
    rp = _rp(conn, host)
    flavor = conn.compute.get_flavor(ops.flavor_id)
    before = _usages(conn, rp.id)

    server = servers.create(host=host)
    after = _usages(conn, rp.id)
    assert after["VCPU"] - before["VCPU"] == flavor.vcpus
    assert after["MEMORY_MB"] - before["MEMORY_MB"] == flavor.ram
    assert after["DISK_GB"] - before["DISK_GB"] == flavor.disk

    r = conn.placement.get(f"/allocations/{server['id']}", microversion="1.38")
    assert r.status_code == 200
    body = r.json()
    assert body["allocations"] == {
        rp.id: {
            "resources": {"VCPU": flavor.vcpus, "MEMORY_MB": flavor.ram, "DISK_GB": flavor.disk},
            "generation": body["allocations"][rp.id]["generation"],
        }
    }
    assert body["project_id"] == server["tenant_id"]
    assert body["user_id"] == server["user_id"]
    assert "consumer_generation" in body and "consumer_type" in body

    servers.cleanup()
    servers.ids.clear()
    wait_for(
        lambda: _usages(conn, rp.id) == before, "usages back to where they were", ACTION_TIMEOUT
    )
    assert conn.placement.get(f"/allocations/{server['id']}").json()["allocations"] == {}


def test_provider_aggregates_via_sdk(conn, cloud):
    rp = _rp(conn, cloud.hosts[3])
    aggregates = conn.placement.get_resource_provider_aggregates(rp).aggregates
    assert isinstance(aggregates, list)


def test_unknown_provider_is_404(conn):
    missing = "00000000-0000-0000-0000-000000000000"
    r = conn.placement.get(f"/resource_providers/{missing}")
    assert r.status_code == 404
    (err,) = r.json()["errors"]
    assert err["status"] == 404
    assert f"No resource provider with uuid {missing} found" in err["detail"]
