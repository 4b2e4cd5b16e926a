"""os-services and os-hypervisors: what an HA controller reads to judge a host.

Real Nova (34.0.0) facts pinned here:
- At microversion >= 2.53 service and hypervisor ids are UUID strings and a service is
  updated with ``PUT /os-services/{uuid}``; below 2.53 the ids are integers.
- ``forced_down: true`` makes ``state`` read ``down`` at once; ``false`` brings back ``up``
  (if the service still heartbeats).
- A silent service turns ``down`` once its last heartbeat is older than
  ``service_down_time``; its ``updated_at`` is the last heartbeat and stops moving.
- A PUT with ``disabled_reason`` but no ``status``/``forced_down`` is a 400, and so is a
  reason with ``status: enabled``.
"""

from __future__ import annotations

import time
import uuid

import pytest

from .conftest import wait_for


def _is_uuid(value: object) -> bool:
    try:
        return str(uuid.UUID(str(value))) == value
    except ValueError:
        return False


def test_every_host_has_an_up_enabled_nova_compute(conn, cloud):
    computes = [s for s in conn.compute.services() if s.binary == "nova-compute"]
    assert sorted(s.host for s in computes) == sorted(cloud.hosts)
    for s in computes:
        assert (s.state, s.status, s.availability_zone) == ("up", "enabled", "nova")
        assert s.is_forced_down is False


def test_control_plane_services_are_listed_in_internal_zone(ops):
    r = ops.get("/os-services", "2.53")
    binaries = {s["binary"]: s for s in r.json()["services"]}
    for binary in ("nova-conductor", "nova-scheduler"):
        assert binaries[binary]["zone"] == "internal"
        assert binaries[binary]["state"] == "up"


def test_service_ids_are_uuids_from_2_53(ops, cloud):
    host = cloud.hosts[0]
    new = ops.get(f"/os-services?binary=nova-compute&host={host}", "2.53").json()
    old = ops.get(f"/os-services?binary=nova-compute&host={host}", "2.52").json()
    (svc,) = new["services"]
    (legacy,) = old["services"]
    assert _is_uuid(svc["id"])
    assert isinstance(legacy["id"], int)
    assert set(svc) == {
        "binary",
        "host",
        "id",
        "zone",
        "status",
        "state",
        "updated_at",
        "disabled_reason",
        "forced_down",
    }


def test_disable_with_reason_then_enable_via_sdk(conn, ops, cloud):
    host = cloud.hosts[1]
    svc = next(conn.compute.services(binary="nova-compute", host=host))
    try:
        conn.compute.disable_service(svc, disabled_reason="contract: maintenance")
        s = ops.service(host)
        assert (s["status"], s["disabled_reason"]) == ("disabled", "contract: maintenance")
        assert s["state"] == "up"  # disabling is not a failure
        hyp = next(
            h
            for h in ops.get("/os-hypervisors", "2.88").json()["hypervisors"]
            if h["hypervisor_hostname"] == host
        )
        assert hyp["status"] == "disabled"
    finally:
        conn.compute.enable_service(svc)
    s = ops.service(host)
    assert (s["status"], s["disabled_reason"]) == ("enabled", None)


def test_put_status_disabled_with_reason_at_2_53(ops, cloud):
    host = cloud.hosts[2]
    try:
        r = ops.set_service(host, {"status": "disabled", "disabled_reason": "contract"})
        assert r.status_code == 200, r.text
        body = r.json()["service"]
        assert (body["host"], body["status"], body["disabled_reason"]) == (
            host,
            "disabled",
            "contract",
        )
    finally:
        r = ops.set_service(host, {"status": "enabled"})
    assert r.status_code == 200
    assert r.json()["service"]["disabled_reason"] is None


def test_put_validation_errors_at_2_53(ops, cloud):
    host = cloud.hosts[0]
    r = ops.set_service(host, {"disabled_reason": "no status"})
    assert r.status_code == 400
    assert "No updates were requested" in r.json()["badRequest"]["message"]

    r = ops.set_service(host, {"status": "enabled", "disabled_reason": "x"})
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == (
        "Specifying 'disabled_reason' with status 'enabled' is invalid."
    )

    missing = "00000000-0000-0000-0000-000000000000"
    r = ops.put(f"/os-services/{missing}", {"status": "enabled"}, "2.53")
    assert r.status_code == 404
    assert r.json()["itemNotFound"]["message"] == f"Service {missing} could not be found."

    r = ops.put("/os-services/1", {"status": "enabled"}, "2.53")
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == "Invalid uuid 1"


def test_force_down_and_back_at_2_53(ops, cloud):
    host = cloud.hosts[3]
    try:
        r = ops.set_service(host, {"forced_down": True})
        assert r.status_code == 200, r.text
        body = r.json()["service"]
        assert (body["forced_down"], body["state"], body["status"]) == (True, "down", "enabled")
    finally:
        r = ops.set_service(host, {"forced_down": False})
    assert r.status_code == 200
    assert (r.json()["service"]["forced_down"], r.json()["service"]["state"]) == (False, "up")


def test_force_down_via_sdk(conn, ops, cloud):
    host = cloud.hosts[0]
    svc = next(conn.compute.services(binary="nova-compute", host=host))
    try:
        conn.compute.update_service_forced_down(svc, forced=True)
        assert ops.service(host)["forced_down"] is True
        assert ops.service(host)["state"] == "down"
    finally:
        conn.compute.update_service_forced_down(svc, forced=False)
    assert ops.wait_service_state(host, "up")["forced_down"] is False


def test_heartbeats_advance_updated_at(ops, cloud):
    host = cloud.hosts[1]
    first = ops.service(host)["updated_at"]
    wait_for(
        lambda: ops.service(host)["updated_at"] > first,
        "updated_at to advance",
        cloud.service_down_time + 5,
    )


@pytest.mark.slow
def test_failed_host_goes_down_after_service_down_time(ops, cloud, failures):
    host = cloud.hosts[0]
    sdt = cloud.service_down_time
    assert ops.service(host)["state"] == "up"

    started = time.monotonic()
    failures.fail(host, "power")
    # Nothing changes at once: the service is still "up" until its heartbeat is stale.
    assert ops.service(host)["state"] == "up"
    down = ops.wait_service_state(host, "down")
    elapsed = time.monotonic() - started
    # Down no sooner than service_down_time after the last heartbeat (which was at most
    # a report interval before the failure) and not much later.
    assert elapsed >= sdt - 1.5, f"down after {elapsed:.1f}s, service_down_time {sdt}s"
    assert elapsed <= sdt + 6, f"down after {elapsed:.1f}s, service_down_time {sdt}s"
    assert (down["status"], down["forced_down"]) == ("enabled", False)

    # updated_at is the last heartbeat: frozen while the host is dead.
    frozen = down["updated_at"]
    time.sleep(2)
    assert ops.service(host)["updated_at"] == frozen

    hyp = next(
        h
        for h in ops.get("/os-hypervisors", "2.88").json()["hypervisors"]
        if h["hypervisor_hostname"] == host
    )
    assert (hyp["state"], hyp["status"]) == ("down", "enabled")

    # The host comes back: heartbeats resume and the service is up again.
    assert cloud.control.recover(host).status_code == 200
    up = ops.wait_service_state(host, "up", timeout=sdt + 10)
    assert up["updated_at"] > frozen


def test_control_refuses_unknown_mode_and_host(cloud):
    r = cloud.control.fail(cloud.hosts[0], "no-such-mode")
    assert r.status_code == 400
    assert "error" in r.json()
    r = cloud.control.fail("no-such-host", "power")
    assert r.status_code == 404
    info = cloud.control.info()
    assert info["hosts"] == cloud.hosts
    assert info["service_down_time"] == cloud.service_down_time


# -- hypervisors --------------------------------------------------------------------------


def test_hypervisor_list_at_2_88(ops, cloud):
    r = ops.get("/os-hypervisors", "2.88")
    assert r.status_code == 200
    hyps = r.json()["hypervisors"]
    assert sorted(h["hypervisor_hostname"] for h in hyps) == sorted(cloud.hosts)
    for h in hyps:
        assert set(h) == {"id", "hypervisor_hostname", "state", "status"}
        assert _is_uuid(h["id"])
        assert (h["state"], h["status"]) == ("up", "enabled")


def test_hypervisor_detail_at_2_88_drops_resource_fields(ops, cloud):
    r = ops.get("/os-hypervisors/detail", "2.88")
    assert r.status_code == 200
    services = {
        s["host"]: s for s in ops.get("/os-services?binary=nova-compute", "2.53").json()["services"]
    }
    for h in r.json()["hypervisors"]:
        for key in (
            "id",
            "hypervisor_hostname",
            "state",
            "status",
            "hypervisor_type",
            "hypervisor_version",
            "host_ip",
            "service",
            "uptime",
        ):
            assert key in h, key
        for gone in (
            "vcpus",
            "memory_mb",
            "local_gb",
            "vcpus_used",
            "memory_mb_used",
            "running_vms",
            "free_ram_mb",
            "disk_available_least",
            "cpu_info",
        ):
            assert gone not in h, gone
        svc = services[h["hypervisor_hostname"]]
        assert h["service"] == {"id": svc["id"], "host": svc["host"], "disabled_reason": None}

    older = ops.get("/os-hypervisors/detail", "2.87").json()["hypervisors"][0]
    for key in ("vcpus", "memory_mb", "local_gb", "vcpus_used", "running_vms"):
        assert isinstance(older[key], int), key


def test_hypervisor_with_servers_and_pagination(ops, servers, cloud):
    host = cloud.hosts[2]
    server = servers.create(host=host)
    r = ops.get(f"/os-hypervisors?hypervisor_hostname_pattern={host}&with_servers=true", "2.88")
    assert r.status_code == 200
    (hyp,) = r.json()["hypervisors"]
    # "name" is the instance name on the hypervisor, not the server's display name.
    assert {"uuid": server["id"], "name": server["OS-EXT-SRV-ATTR:instance_name"]} in (
        hyp["servers"]
    )

    page = ops.get("/os-hypervisors?limit=1", "2.88").json()
    assert len(page["hypervisors"]) == 1
    (link,) = page["hypervisors_links"]
    assert link["rel"] == "next"
    assert f"marker={page['hypervisors'][0]['id']}" in link["href"]


@pytest.mark.slow
def test_hypervisor_detail_at_2_88_fails_while_a_dead_host_still_reads_up(ops, cloud, failures):
    """From 2.88 the detail view asks every *up* compute for its uptime over RPC. A host
    that just died is still "up" until service_down_time passes, so the call waits for
    the RPC timeout (rpc_response_timeout; 60 s by default, shortened in the oracle)
    and then the whole listing fails with a 500. The list view and 2.87 stay usable."""
    host = cloud.hosts[2]
    failures.fail(host, "power")
    started = time.monotonic()
    r = ops.get("/os-hypervisors/detail", "2.88")
    elapsed = time.monotonic() - started
    assert r.status_code == 500, (r.status_code, elapsed)
    message = r.json()["computeFault"]["message"]
    assert message.startswith("Unexpected API Error.")
    assert "MessagingTimeout" in message

    for url, mv in (("/os-hypervisors", "2.88"), ("/os-hypervisors/detail", "2.87")):
        started = time.monotonic()
        r = ops.get(url, mv)
        assert r.status_code == 200
        assert time.monotonic() - started < 5
    # Once the service reads down, Nova skips the RPC and detail works again.
    ops.wait_service_state(host, "down")
    r = ops.get("/os-hypervisors/detail", "2.88")
    assert r.status_code == 200
    dead = next(h for h in r.json()["hypervisors"] if h["hypervisor_hostname"] == host)
    assert (dead["state"], dead["uptime"]) == ("down", None)


def test_missing_hypervisor_is_404(ops):
    missing = "00000000-0000-0000-0000-000000000000"
    r = ops.get(f"/os-hypervisors/{missing}", "2.88")
    assert r.status_code == 404
    assert r.json()["itemNotFound"]["message"] == (
        f"Hypervisor with ID '{missing}' could not be found."
    )
