"""API faults injected through the control endpoint: errors and latency on chosen endpoints,
counted down, listed and cleared; bad fault specs refused."""

from __future__ import annotations

import time

import pytest
from werkzeug.test import Client

from hastack.clock import VirtualClock
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.cloud import ADMIN_PASSWORD, SimCloud
from hastack.sim.http.app import SimApp
from hastack.sim.world import World


@pytest.fixture
def client() -> tuple[Client, dict[str, str]]:
    world = World(VirtualClock(), seed=2)
    build_world(world, CloudSpec(hosts=3, instances=6))
    c = Client(SimApp(SimCloud(world)))
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}
            },
        },
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
    }
    r = c.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert r.status_code == 201
    return c, {"X-Auth-Token": r.headers["X-Subject-Token"]}


def test_error_fault_hits_only_its_endpoint_and_counts_down(client) -> None:
    c, h = client
    r = c.post(
        "/control/api-faults",
        json={
            "service": "compute",
            "method": "GET",
            "path": "os-services",
            "status": 503,
            "count": 2,
        },
    )
    assert r.status_code == 201 and r.json["count"] == 2
    assert c.get("/compute/v2.1/servers", headers=h).status_code == 200  # other endpoint
    assert c.get("/placement/resource_providers", headers=h).status_code == 200  # other service
    first = c.get("/compute/v2.1/os-services", headers=h)
    assert first.status_code == 503
    assert "injected fault" in first.json["computeFault"]["message"]
    assert c.get("/compute/v2.1/os-services", headers=h).status_code == 503
    assert c.get("/compute/v2.1/os-services", headers=h).status_code == 200  # used up
    assert c.get("/control/api-faults").json == {"api_faults": []}


def test_latency_fault_delays_and_clear_removes_it(client) -> None:
    c, h = client
    r = c.post("/control/api-faults", json={"service": "image", "path": "images", "latency": 0.3})
    assert r.status_code == 201
    started = time.monotonic()
    assert c.get("/image/v2/images", headers=h).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert len(c.get("/control/api-faults").json["api_faults"]) == 1
    assert c.delete("/control/api-faults").status_code == 204
    started = time.monotonic()
    assert c.get("/image/v2/images", headers=h).status_code == 200
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "x"},  # neither status nor latency
        {"path": "x", "status": 200},  # not an error status
        {"path": "(", "status": 500},  # not a regular expression
        {"path": "x", "latency": -1},
        {"path": "x", "status": "many"},
    ],
)
def test_bad_fault_specs_are_refused_and_nothing_is_added(client, spec) -> None:
    c, _ = client
    r = c.post("/control/api-faults", json=spec)
    assert r.status_code == 400
    assert r.json["error"]["message"]
    assert c.get("/control/api-faults").json == {"api_faults": []}


def test_control_fail_and_recover_round_trip(client) -> None:
    c, _ = client
    assert c.post("/control/hosts/compute02/fail", json={"mode": "bmc-busy"}).status_code == 200
    assert c.get("/control/hosts/compute02").json["bmc"] == "busy"
    assert c.post("/control/hosts/compute02/recover", json={}).status_code == 200
    assert c.get("/control/hosts/compute02").json["bmc"] == "ok"
    bad = c.post("/control/hosts/compute02/fail", data="{not json", content_type="application/json")
    assert bad.status_code == 400
