"""Evacuation: the recovery action an instance-HA controller drives.

Real Nova (34.0.0) facts pinned here:
- Evacuating a server whose source nova-compute is up (heartbeating and not forced
  down) is refused with **400** ``Compute service of HOST is still in use.`` (not 409),
  and leaves no migration record behind. A freshly failed host keeps being refused until
  its heartbeat is older than ``service_down_time`` -- or at once after force-down.
- Accepted evacuations answer 200 with an empty body (2.14+) and are asynchronous: the
  API sets ``task_state: rebuilding`` (status ``REBUILD``) before answering.
- A migration record of ``migration_type: evacuation`` goes ``accepted`` ->
  ``pre-migrating`` -> ``done`` on the destination, and ``completed`` once the source
  nova-compute starts again and cleans up.
- Microversion decides the end state of a server that was ACTIVE: ACTIVE up to 2.94,
  SHUTOFF from 2.95. openstacksdk's ``evacuate_server`` negotiates the newest
  microversion, so it gets 2.95+ behaviour: SHUTOFF.
- On the destination Nova clears task_state (server reads ``ACTIVE``, task_state None)
  *before* it moves ``OS-EXT-SRV-ATTR:host`` and marks the migration ``done``. So ACTIVE
  alone does not mean evacuated: a controller must see the host change and the migration
  ``done``. The migration is marked done only after the host moved.
"""

from __future__ import annotations

import time

import pytest

from .conftest import ACTION_TIMEOUT, wait_for

IN_USE = "Compute service of {host} is still in use."


def _evac_migrations(ops, server_id):
    return [
        m for m in ops.migrations(instance_uuid=server_id) if m["migration_type"] == "evacuation"
    ]


def _evacuated(ops, server_id, source):
    """Done means: migration ``done`` (read first) and the host moved (read second)."""
    migs = _evac_migrations(ops, server_id)
    if not migs or migs[0]["status"] not in ("done", "completed"):
        return None
    s = ops.server(server_id)
    # Nova saves the new host before it marks the migration done.
    assert s["OS-EXT-SRV-ATTR:host"] != source, (s, migs[0])
    return s if s["OS-EXT-STS:task_state"] is None else None


def _wait_evacuated(ops, server_id, source):
    return wait_for(
        lambda: _evacuated(ops, server_id, source),
        f"server {server_id} evacuated from {source}",
        ACTION_TIMEOUT,
    )


def test_evacuate_refused_while_source_service_is_up(ops, servers, cloud):
    host = cloud.hosts[0]
    server = servers.create(host=host)
    for mv in ("2.29", "2.94", "2.95"):
        r = ops.action(server["id"], {"evacuate": {}}, mv)
        assert r.status_code == 400, (mv, r.text)
        assert r.json() == {"badRequest": {"code": 400, "message": IN_USE.format(host=host)}}
    s = ops.server(server["id"])
    assert (s["status"], s["OS-EXT-STS:task_state"], s["OS-EXT-SRV-ATTR:host"]) == (
        "ACTIVE",
        None,
        host,
    )
    assert _evac_migrations(ops, server["id"]) == []


def test_evacuate_to_same_or_unknown_host_is_refused(ops, servers, cloud):
    host = cloud.hosts[1]
    server = servers.create(host=host)
    r = ops.action(server["id"], {"evacuate": {"host": host}}, "2.95")
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == "The target host can't be the same one."
    r = ops.action(server["id"], {"evacuate": {"host": "nope"}}, "2.95")
    assert r.status_code == 404
    # (Booting onto an unknown host says "could not be found"; evacuate says this.)
    assert r.json()["itemNotFound"]["message"] == "Compute host nope not found."
    r = ops.action(server["id"], {"evacuate": {"force": True}}, "2.29")
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == "Can't force to a non-provided destination"


def test_member_may_not_evacuate(ops, servers, demo_conn):
    server = servers.create()
    r = demo_conn.compute.post(
        f"/servers/{server['id']}/action", json={"evacuate": {}}, microversion="2.95"
    )
    # The member cannot even see the admin's server.
    assert r.status_code == 404


@pytest.mark.slow
def test_evacuation_after_host_failure(ops, servers, failures, cloud):
    source, target = cloud.hosts[-1], cloud.hosts[0]
    s_new = servers.create(host=source, name="evac-2.95")
    s_old = servers.create(host=source, name="evac-2.94")
    s_targeted = servers.create(host=source, name="evac-targeted")

    failures.fail(source, "power")
    # Still heartbeating as far as Nova knows: refused, as for a live host.
    r = ops.action(s_new["id"], {"evacuate": {}}, "2.95")
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == IN_USE.format(host=source)
    # Nova itself does not notice the failure: servers still read ACTIVE on the host,
    # only host_status says the host is no longer known to be up.
    ops.wait_service_state(source, "down")
    s = ops.server(s_new["id"])
    assert (s["status"], s["OS-EXT-SRV-ATTR:host"], s["host_status"]) == (
        "ACTIVE",
        source,
        "UNKNOWN",
    )

    r = ops.action(s_new["id"], {"evacuate": {}}, "2.95")
    assert r.status_code == 200, r.text
    assert r.content == b""  # 2.14+: no adminPass in the body
    # Asynchronous: the API has already flagged the server.
    s = ops.server(s_new["id"])
    assert (s["status"], s["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuilding")
    assert s["OS-EXT-SRV-ATTR:host"] == source

    assert ops.action(s_old["id"], {"evacuate": {}}, "2.94").status_code == 200
    r = ops.action(s_targeted["id"], {"evacuate": {"host": target}}, "2.95")
    assert r.status_code == 200, r.text

    done_new = _wait_evacuated(ops, s_new["id"], source)
    done_old = _wait_evacuated(ops, s_old["id"], source)
    done_targeted = _wait_evacuated(ops, s_targeted["id"], source)

    # 2.95+: an ACTIVE server ends stopped on its new host; 2.94: ACTIVE.
    assert (done_new["status"], done_new["OS-EXT-STS:vm_state"]) == ("SHUTOFF", "stopped")
    assert (done_old["status"], done_old["OS-EXT-STS:vm_state"]) == ("ACTIVE", "active")
    assert done_targeted["OS-EXT-SRV-ATTR:host"] == target
    for s in (done_new, done_old, done_targeted):
        assert s["OS-EXT-SRV-ATTR:host"] in cloud.hosts
        assert s["OS-EXT-SRV-ATTR:host"] != source
        assert s["OS-EXT-SRV-ATTR:hypervisor_hostname"] == s["OS-EXT-SRV-ATTR:host"]
        assert s["host_status"] == "UP"
        (mig,) = _evac_migrations(ops, s["id"])
        assert mig["status"] == "done"
        assert (mig["source_compute"], mig["source_node"]) == (source, source)
        assert (mig["dest_compute"], mig["dest_node"]) == (
            s["OS-EXT-SRV-ATTR:host"],
            s["OS-EXT-SRV-ATTR:host"],
        )
        actions = [
            a["action"]
            for a in ops.get(f"/servers/{s['id']}/os-instance-actions", "2.84").json()[
                "instanceActions"
            ]
        ]
        assert actions[:1] == ["evacuate"] and "create" in actions

    # os-migrations filters: by type and by source host.
    by_source = ops.migrations(migration_type="evacuation", source_compute=source)
    assert {m["instance_uuid"] for m in by_source} >= {s_new["id"], s_old["id"], s_targeted["id"]}
    assert all(m["migration_type"] == "evacuation" for m in by_source)
    assert ops.migrations(migration_type="live-migration", source_compute=source) == []
    assert {m["instance_uuid"] for m in ops.migrations(host=source)} >= {s_new["id"]}

    # The source comes back: its nova-compute cleans up and completes the migrations.
    assert cloud.control.recover(source).status_code == 200
    wait_for(
        lambda: all(
            m["status"] == "completed"
            for m in ops.migrations(migration_type="evacuation", source_compute=source)
        ),
        "evacuation migrations completed",
        ACTION_TIMEOUT,
    )
    # And the servers stay where they were evacuated to.
    assert ops.server(s_new["id"])["OS-EXT-SRV-ATTR:host"] == done_new["OS-EXT-SRV-ATTR:host"]


@pytest.mark.slow
def test_force_down_allows_evacuation_at_once(conn, ops, servers, failures, cloud):
    """The fencing path: host fenced -> force-down -> evacuate, with no wait for
    service_down_time."""
    source = cloud.hosts[-2]
    server = servers.create(host=source)
    failures.fail(source, "power")
    started = time.monotonic()
    r = ops.set_service(source, {"forced_down": True})
    assert r.status_code == 200
    assert (r.json()["service"]["state"], r.json()["service"]["forced_down"]) == ("down", True)
    assert ops.server(server["id"])["host_status"] == "DOWN"

    # Through openstacksdk's own call, which negotiates the newest microversion.
    conn.compute.evacuate_server(server["id"])
    done = _wait_evacuated(ops, server["id"], source)
    assert time.monotonic() - started < ops.cloud.service_down_time + ACTION_TIMEOUT
    assert (done["status"], done["OS-EXT-STS:vm_state"]) == ("SHUTOFF", "stopped")

    # A forced-down service stays down after the host comes back, until an admin
    # lifts forced_down.
    assert cloud.control.recover(source).status_code == 200
    time.sleep(cloud.service_down_time / 2)
    svc = ops.service(source)
    assert (svc["state"], svc["forced_down"]) == ("down", True)
    assert ops.set_service(source, {"forced_down": False}).status_code == 200
    assert ops.wait_service_state(source, "up")["forced_down"] is False
    wait_for(
        lambda: _evac_migrations(ops, server["id"])[0]["status"] == "completed",
        "evacuation migration completed",
        ACTION_TIMEOUT,
    )


@pytest.mark.slow
def test_evacuate_stopped_server_stays_stopped(conn, ops, servers, failures, cloud):
    source = cloud.hosts[-2]
    server = servers.create(host=source)
    conn.compute.stop_server(server["id"])
    wait_for(lambda: ops.server(server["id"])["status"] == "SHUTOFF", "stopped", ACTION_TIMEOUT)
    failures.fail(source, "compute-crash")
    assert ops.set_service(source, {"forced_down": True}).status_code == 200
    assert ops.action(server["id"], {"evacuate": {}}, "2.94").status_code == 200
    done = _wait_evacuated(ops, server["id"], source)
    assert (done["status"], done["OS-EXT-STS:vm_state"]) == ("SHUTOFF", "stopped")


def test_host_status_reflects_service_state(ops, servers, cloud):
    host = cloud.hosts[1]
    server = servers.create(host=host)
    assert ops.server(server["id"])["host_status"] == "UP"
    try:
        ops.set_service(host, {"status": "disabled", "disabled_reason": "contract"})
        assert ops.server(server["id"])["host_status"] == "MAINTENANCE"
        ops.set_service(host, {"forced_down": True})
        # forced_down wins over disabled.
        assert ops.server(server["id"])["host_status"] == "DOWN"
    finally:
        ops.set_service(host, {"forced_down": False})
        ops.set_service(host, {"status": "enabled"})
    assert ops.server(server["id"])["host_status"] == "UP"
