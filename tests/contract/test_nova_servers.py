"""Servers: boot onto a chosen host, list/show as admin, paginate, act on them.

Real Nova (34.0.0) facts pinned here:
- ``POST /servers`` answers 202; at >= 2.74 an admin may name the ``host``; the older
  way is ``availability_zone: "nova:HOST"``.
- A listing without ``all_tenants`` shows only the caller's project, even for admin; with
  ``host=`` (admin only) it filters on ``OS-EXT-SRV-ATTR:host``. In openstacksdk the
  filter is ``compute_host=`` (``host=`` is silently a client-side filter on an attribute
  that is never set, so it returns nothing).
- Pagination: ``limit``/``marker`` and a ``servers_links`` ``next`` link; an unknown
  marker is a 400 ``marker [X] not found``.
- From 2.47 the server embeds its flavor (``original_name``, ``vcpus``, ``ram``, ``disk``,
  ``ephemeral``, ``swap``, ``extra_specs``); before, ``{"id", "links"}``.
- Admin may stop a locked server; a member gets 409 ``Instance X is locked``.
- ``os-resetState`` only takes ``active`` or ``error``.
"""

from __future__ import annotations

import re

import pytest

from .conftest import ACTION_TIMEOUT, wait_for


def _status(ops, server_id, status):
    return wait_for(
        lambda: (
            (s := ops.server(server_id))["status"] == status
            and s["OS-EXT-STS:task_state"] is None
            and s
        ),
        f"server {server_id} {status}",
        ACTION_TIMEOUT,
    )


def test_boot_on_named_host_at_2_74(servers, cloud):
    host = cloud.hosts[1]
    server = servers.create(host=host, metadata={"ha:policy": "evacuate"})
    assert server["OS-EXT-SRV-ATTR:host"] == host
    assert server["OS-EXT-SRV-ATTR:hypervisor_hostname"] == host
    assert server["status"] == "ACTIVE"
    assert server["OS-EXT-STS:vm_state"] == "active"
    assert server["OS-EXT-STS:task_state"] is None
    assert server["OS-EXT-STS:power_state"] == 1
    assert server["metadata"] == {"ha:policy": "evacuate"}
    assert server["OS-EXT-AZ:availability_zone"] == "nova"
    assert server["host_status"] == "UP"


def test_boot_on_host_via_availability_zone(conn, ops, servers, cloud):
    host = cloud.hosts[2]
    server = conn.compute.create_server(
        name="contract-az",
        image_id=ops.image_id,
        flavor_id=ops.flavor_id,
        networks="none",
        availability_zone=f"nova:{host}",
    )
    servers.ids.append(server.id)
    server = conn.compute.wait_for_server(server, wait=60, interval=0.2)
    assert server.status == "ACTIVE"
    assert server.compute_host == host


def test_boot_on_unknown_host_is_400(ops):
    body = {
        "server": {
            "name": "nohost",
            "imageRef": ops.image_id,
            "flavorRef": ops.flavor_id,
            "networks": "none",
            "host": "nope",
        }
    }
    r = ops.post("/servers", body, "2.74")
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == "Compute host nope could not be found."


def test_show_fields_and_embedded_flavor(ops, servers, conn):
    flavor = conn.compute.get_flavor(ops.flavor_id)
    server = servers.create()
    s = ops.server(server["id"], "2.47")
    for key in (
        "OS-EXT-SRV-ATTR:host",
        "OS-EXT-SRV-ATTR:hypervisor_hostname",
        "OS-EXT-SRV-ATTR:instance_name",
        "OS-EXT-STS:vm_state",
        "OS-EXT-STS:task_state",
        "OS-EXT-STS:power_state",
        "metadata",
        "flavor",
        "tenant_id",
        "user_id",
        "status",
        "created",
        "updated",
        "hostId",
    ):
        assert key in s, key
    assert s["flavor"] == {
        "original_name": flavor.name,
        "vcpus": flavor.vcpus,
        "ram": flavor.ram,
        "disk": flavor.disk,
        "ephemeral": 0,
        "swap": 0,
        "extra_specs": {},
    }
    assert ops.server(server["id"], "2.46")["flavor"]["id"] == ops.flavor_id
    assert "original_name" not in ops.server(server["id"], "2.46")["flavor"]
    # host_status appears from 2.16; locked_reason from 2.73.
    assert "host_status" not in ops.server(server["id"], "2.15")
    assert ops.server(server["id"], "2.73")["locked_reason"] is None


def test_missing_server_is_404_with_nova_body(ops):
    missing = "00000000-0000-0000-0000-000000000000"
    r = ops.get(f"/servers/{missing}", "2.95")
    assert r.status_code == 404
    assert r.json() == {
        "itemNotFound": {"code": 404, "message": f"Instance {missing} could not be found."}
    }


def test_host_filter_and_all_projects(conn, ops, servers, cloud):
    host, other = cloud.hosts[3], cloud.hosts[2]
    mine = servers.create(host=host)
    elsewhere = servers.create(host=other)

    on_host = list(conn.compute.servers(details=True, all_projects=True, compute_host=host))
    assert mine["id"] in {s.id for s in on_host}
    assert elsewhere["id"] not in {s.id for s in on_host}
    assert all(s.compute_host == host for s in on_host)
    # sdk pitfall: `host=` is not the server-side filter (it filters client-side on an
    # attribute the API never returns), so it finds nothing.
    assert list(conn.compute.servers(details=True, all_projects=True, host=host)) == []

    raw = ops.get(f"/servers/detail?all_tenants=1&host={host}", "2.95").json()["servers"]
    assert {s["id"] for s in raw} == {s.id for s in on_host}
    assert {s["OS-EXT-SRV-ATTR:host"] for s in raw} == {host}
    everyone = {s.id for s in conn.compute.servers(details=True, all_projects=True)}
    assert {mine["id"], elsewhere["id"]} <= everyone


def _member_server(demo_conn, ops, servers, name: str) -> str:
    """Boot a server as the non-admin member; cleaned up with the admin's."""
    r = demo_conn.compute.post(
        "/servers",
        json={
            "server": {
                "name": name,
                "imageRef": ops.image_id,
                "flavorRef": ops.flavor_id,
                "networks": "none",
            }
        },
        microversion="2.95",
    )
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    servers.ids.append(server_id)
    servers.wait_active(server_id)
    return server_id


def test_listing_without_all_tenants_is_project_scoped(conn, demo_conn, ops, servers):
    mine = servers.create()
    theirs = _member_server(demo_conn, ops, servers, "contract-demo")

    # Even for an admin, no all_tenants means "my project only".
    own = {s["id"] for s in ops.get("/servers/detail", "2.95").json()["servers"]}
    assert mine["id"] in own and theirs not in own
    everyone = {s.id for s in conn.compute.servers(details=True, all_projects=True)}
    assert {mine["id"], theirs} <= everyone
    assert demo_conn.compute.get(f"/servers/{mine['id']}").status_code == 404


def test_member_cannot_list_all_projects(demo_conn):
    r = demo_conn.compute.get("/servers?all_tenants=1", microversion="2.95")
    assert r.status_code == 403
    assert r.json()["forbidden"]["message"] == (
        "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed."
    )


def test_pagination_with_limit_and_marker(conn, ops, servers, cloud):
    created = {servers.create(host=cloud.hosts[0], wait=False)["id"] for _ in range(5)}
    for server_id in created:
        servers.wait_active(server_id)

    seen: list[str] = []
    url = "/servers/detail?all_tenants=1&limit=2"
    pages = 0
    while url:
        body = ops.get(url, "2.95").json()
        pages += 1
        assert len(body["servers"]) <= 2
        seen.extend(s["id"] for s in body["servers"])
        nxt = [link["href"] for link in body.get("servers_links", []) if link["rel"] == "next"]
        if nxt:
            assert re.search(r"[?&]limit=2(&|$)", nxt[0]), nxt[0]
            assert f"marker={body['servers'][-1]['id']}" in nxt[0]
            url = "/servers/detail?" + nxt[0].split("?", 1)[1]
        else:
            url = ""
    assert len(seen) == len(set(seen))
    assert created <= set(seen)
    assert pages >= 3
    # The sdk follows the links itself.
    assert created <= {s.id for s in conn.compute.servers(all_projects=True, limit=2)}


def test_unknown_marker_is_400(ops):
    r = ops.get("/servers/detail?marker=not-a-server", "2.95")
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == "marker [not-a-server] not found"


def test_stop_start_and_state_conflict(conn, ops, servers):
    server = servers.create()
    conn.compute.stop_server(server["id"])
    s = _status(ops, server["id"], "SHUTOFF")
    assert (s["OS-EXT-STS:vm_state"], s["OS-EXT-STS:power_state"]) == ("stopped", 4)
    conn.compute.start_server(server["id"])
    s = _status(ops, server["id"], "ACTIVE")
    assert (s["OS-EXT-STS:vm_state"], s["OS-EXT-STS:power_state"]) == ("active", 1)

    r = ops.action(server["id"], {"os-start": None})
    assert r.status_code == 409
    assert r.json()["conflictingRequest"]["message"] == (
        f"Cannot 'start' instance {server['id']} while it is in vm_state active"
    )


def test_lock_blocks_member_but_not_admin(ops, servers, demo_conn):
    server_id = _member_server(demo_conn, ops, servers, "contract-lock")

    r = ops.action(server_id, {"lock": {"locked_reason": "contract"}}, "2.73")
    assert r.status_code == 202
    s = ops.server(server_id, "2.73")
    assert (s["locked"], s["locked_reason"]) == (True, "contract")

    r = demo_conn.compute.post(f"/servers/{server_id}/action", json={"os-stop": None})
    assert r.status_code == 409
    assert r.json()["conflictingRequest"]["message"] == f"Instance {server_id} is locked"
    r = demo_conn.compute.post(f"/servers/{server_id}/action", json={"unlock": None})
    assert r.status_code == 403  # the owner cannot lift an admin's lock

    # The admin is not held back by the lock.
    assert ops.action(server_id, {"os-stop": None}).status_code == 202
    _status(ops, server_id, "SHUTOFF")
    assert ops.action(server_id, {"unlock": None}).status_code == 202
    assert ops.server(server_id, "2.73")["locked"] is False


def test_admin_may_stop_a_locked_server(conn, ops, servers):
    server = servers.create()
    conn.compute.lock_server(server["id"])
    assert ops.server(server["id"])["locked"] is True
    conn.compute.stop_server(server["id"])
    _status(ops, server["id"], "SHUTOFF")
    conn.compute.unlock_server(server["id"])
    assert ops.server(server["id"])["locked"] is False


def test_reset_state_error_and_active(conn, ops, servers):
    server = servers.create()
    conn.compute.reset_server_state(server["id"], "error")
    s = ops.server(server["id"])
    assert (s["status"], s["OS-EXT-STS:vm_state"]) == ("ERROR", "error")
    conn.compute.reset_server_state(server["id"], "active")
    s = ops.server(server["id"])
    assert (s["status"], s["OS-EXT-STS:vm_state"]) == ("ACTIVE", "active")

    r = ops.action(server["id"], {"os-resetState": {"state": "stopped"}})
    assert r.status_code == 400
    assert "'stopped' is not one of ['active', 'error']" in r.json()["badRequest"]["message"]


def test_instance_actions_record_what_was_done(conn, ops, servers):
    server = servers.create()
    conn.compute.stop_server(server["id"])
    _status(ops, server["id"], "SHUTOFF")
    conn.compute.start_server(server["id"])
    _status(ops, server["id"], "ACTIVE")
    conn.compute.lock_server(server["id"])
    conn.compute.unlock_server(server["id"])
    conn.compute.reset_server_state(server["id"], "active")

    r = ops.get(f"/servers/{server['id']}/os-instance-actions", "2.84")
    assert r.status_code == 200
    actions = r.json()["instanceActions"]
    # Newest first.
    assert [a["action"] for a in actions] == [
        "resetState",
        "unlock",
        "lock",
        "start",
        "stop",
        "create",
    ]
    for a in actions:
        assert a["instance_uuid"] == server["id"]
        assert a["request_id"].startswith("req-")
    via_sdk = [a.action for a in conn.compute.server_actions(server["id"])]
    assert via_sdk == [a["action"] for a in actions]


def test_server_metadata_round_trip(conn, ops, servers):
    server = servers.create(metadata={"a": "1"})
    conn.compute.set_server_metadata(server["id"], b="2")
    assert ops.server(server["id"])["metadata"] == {"a": "1", "b": "2"}
    conn.compute.delete_server_metadata(server["id"], ["a"])
    assert ops.server(server["id"])["metadata"] == {"b": "2"}


@pytest.mark.parametrize("mv", ["2.1", "2.95"])
def test_delete_server(ops, servers, mv):
    server = servers.create()
    r = ops.conn.compute.delete(f"/servers/{server['id']}", microversion=mv)
    assert r.status_code == 204
    wait_for(
        lambda: ops.get(f"/servers/{server['id']}").status_code == 404,
        "server gone",
        ACTION_TIMEOUT,
    )
