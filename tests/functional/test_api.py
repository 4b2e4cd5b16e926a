"""The REST API against a running controller (production wiring, simulated cloud over HTTP):
authentication (static and Keystone tokens, reader and operator), every read, every lever
reaching the leader through the store, precise 4xx errors, and a follower forwarding to the
leader."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml

from hastack.cli.main import main
from hastack.config import load_config
from hastack.controller import build_controller
from hastack.sim import faults
from tests.functional.harness import DETECT, Harness, wait_for

OPERATOR, READER = "op-token-0123456789abcdef", "read-token-0123456789abcdef"
TOKENS = [
    {"name": "alice", "role": "operator", "token": OPERATOR},
    {"name": "bob", "role": "reader", "token": READER},
]


def _api(h: Harness, **extra: Any) -> str:
    h.raw["api"] = {"listen": "127.0.0.1:0", "tokens": TOKENS, **extra}
    h.start()
    assert h.controller is not None and h.controller.api is not None
    return h.controller.api.url


def _get(url: str, path: str, token: str = READER) -> Any:
    r = requests.get(url + path, headers={"X-Auth-Token": token}, timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def _post(url: str, path: str, body: Any = None, token: str = OPERATOR) -> requests.Response:
    return requests.post(url + path, json=body, headers={"X-Auth-Token": token}, timeout=30)


def test_reads_roles_and_errors(cloud: Callable[..., Harness]) -> None:
    h = cloud(hosts=5, instances=15)
    url = _api(h)
    # unauthenticated: health and the OpenAPI document only
    assert requests.get(url + "/healthz", timeout=5).json()["leading"] is True
    spec = requests.get(url + "/openapi.json", timeout=5).json()
    assert {"/v1/hosts", "/v1/hosts/{name}/what-if", "/v1/operations/{op_id}/retry"} <= set(
        spec["paths"]
    )
    for headers in ({}, {"X-Auth-Token": "not-a-token"}):
        r = requests.get(url + "/v1/hosts", headers=headers, timeout=5)
        assert r.status_code == 401 and r.json()["error"], r.text
    assert _get(url, "/v1/whoami") == {"name": "bob", "role": "reader", "source": "static"}
    bearer = requests.get(
        url + "/v1/whoami", headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=5
    )
    assert bearer.json()["role"] == "operator"

    status = _get(url, "/v1/status")
    assert status["leading"] and status["leader"] == "e2e-controller" and status["epoch"] >= 1
    assert status["hosts_by_state"]["ok"] == 5 and not status["paused"]
    assert status["guards"]["budgets"][0]["kind"] == "cloud"
    hosts = _get(url, "/v1/hosts")["hosts"]
    assert sorted(x["name"] for x in hosts) == sorted(h.world.hosts)
    one = hosts[0]
    assert one["state"] == "ok" and one["segment"] == "all"
    assert {s["signal"] for s in one["signals"]} >= {"nova", "probe"}
    assert [[d["type"] for d in level] for level in one["fence_levels"]] == [["ipmi"], ["redfish"]]
    dumped = str(hosts)
    assert all(h.world.hosts[n].bmc_password not in dumped for n in h.world.hosts)
    assert _get(url, "/v1/hosts?state=failed") == {"hosts": []}
    metrics = requests.get(url + "/metrics", timeout=5)  # Prometheus scrapes without a token
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'hastack_hosts{state="ok"} 5.0' in metrics.text
    assert "hastack_leader 1.0" in metrics.text

    # precise 4xx, each an ErrorBody
    missing = requests.get(url + "/v1/hosts/nope", headers={"X-Auth-Token": READER}, timeout=5)
    assert missing.status_code == 404 and missing.json()["field"] == "name"
    bad = requests.get(url + "/v1/hosts?state=melted", headers={"X-Auth-Token": READER}, timeout=5)
    assert bad.status_code == 422 and bad.json()["field"] == "state"
    host = one["name"]
    refused = _post(url, f"/v1/hosts/{host}/maintenance", token=READER)
    assert refused.status_code == 403 and "operator role" in refused.json()["error"]
    unconfirmed = _post(url, f"/v1/hosts/{host}/confirm-off", {"comment": "x"})
    assert unconfirmed.status_code == 422 and unconfirmed.json()["field"] == "confirm"
    no_recovery = _post(url, f"/v1/hosts/{host}/confirm-off", {"confirm": True})
    assert no_recovery.status_code == 409 and "no open recovery" in no_recovery.json()["error"]
    assert _post(url, "/v1/operations/nope/retry").status_code == 404
    assert not h.engine.store.list("/hastack/control/"), "a refused request left a trace"


def test_what_if_plans_with_the_same_core(cloud: Callable[..., Harness]) -> None:
    h = cloud(hosts=6, instances=24)
    url = _api(h)
    host = h.busiest_host()
    victims = h.instances_on(host)
    answer = _get(url, f"/v1/hosts/{host}/what-if")
    assert sorted(e["instance"] for e in answer["evacuations"]) == victims
    assert all(e["target"] not in (None, host) for e in answer["evacuations"])
    assert answer["unplaceable"] == [] and "guards would allow" in answer["fencing"]
    assert answer["verdict"].startswith(f"if {host} failed now")
    # a dry run changes nothing
    assert h.instances_on(host) == victims and not h.journal()


def test_levers_reach_the_leader_and_the_audit_trail(cloud: Callable[..., Harness]) -> None:
    h = cloud(hosts=5, instances=10)
    url = _api(h)
    host = sorted(h.world.hosts)[1]
    r = _post(url, f"/v1/hosts/{host}/maintenance", {"comment": "disk swap"})
    assert r.status_code == 202 and r.json()["by"] == "alice"
    wait_for(lambda: h.state(host) == "maintenance", 10, "maintenance applied by the leader")
    assert _get(url, f"/v1/hosts/{host}")["maintenance"] is True
    off = requests.delete(
        f"{url}/v1/hosts/{host}/maintenance", headers={"X-Auth-Token": OPERATOR}, timeout=5
    )
    assert off.status_code == 202
    wait_for(lambda: h.state(host) == "ok", 10, "out of maintenance")
    again = requests.delete(
        f"{url}/v1/hosts/{host}/maintenance", headers={"X-Auth-Token": OPERATOR}, timeout=5
    )
    assert again.status_code == 409

    assert _post(url, "/v1/cluster/pause", {"comment": "upgrade"}).status_code == 202
    wait_for(lambda: _get(url, "/v1/status")["paused"], 5, "paused")
    assert "already" in _post(url, "/v1/cluster/pause").json()["detail"]
    assert _post(url, "/v1/cluster/resume").status_code == 202
    wait_for(lambda: not _get(url, "/v1/status")["paused"], 5, "resumed")

    events = _get(url, f"/v1/events?host={host}")["events"]
    said = [(e["by"], e["message"]) for e in events]
    assert ("operator alice", "request maintenance: disk swap") in said
    assert ("operator alice", "withdraw maintenance") in said
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    cluster = [e["message"] for e in _get(url, "/v1/events?host=cluster")["events"]]
    assert "request paused: upgrade" in cluster


def test_retry_then_cancel_a_recovery_that_cannot_fence(cloud: Callable[..., Harness]) -> None:
    h = cloud(hosts=5, instances=10)
    host = h.busiest_host()
    h.raw["hosts"][host]["fencing"] = h.raw["hosts"][host]["fencing"][:1]  # IPMI only
    h.raw["recovery"] = {"fence_timeout": 2.0, "fence_attempts": 1}
    url = _api(h)
    faults.fail(h.world, host, "bmc-dead")
    faults.fail(h.world, host, "power")
    h.wait_state(host, "fence_failed", DETECT)
    (op,) = _get(url, f"/v1/operations?host={host}")["operations"]
    assert op["state"] == "open"
    shown = _get(url, f"/v1/hosts/{host}")
    assert shown["state"] == "fence_failed" and shown["operation"] == op["id"]
    lost = {s["signal"]: s["lost"] for s in shown["signals"]}  # the latest of each signal
    assert lost["probe"] is True and lost["nova"] is True, shown["signals"]
    detail = _get(url, f"/v1/operations/{op['id']}")
    fence = next(s for s in detail["steps"] if s["id"] == "fence")
    assert fence["state"] == "failed"

    r = _post(url, f"/v1/operations/{op['id']}/retry", {"comment": "BMC rebooted"})
    assert r.status_code == 202, r.text

    def retried() -> bool:
        log = _get(url, f"/v1/operations/{op['id']}")["log"]
        return any("retry by operator alice of 1 failed step(s): BMC rebooted" in x for x in log)

    wait_for(retried, 10, "the leader retried the fence at once, not after its 60 s wait")
    h.wait_state(host, "fence_failed", DETECT)  # the BMC is still dead: it fails again
    assert not h.evacuations(), "nothing moves without a fence proof"

    assert (
        _post(url, f"/v1/operations/{op['id']}/cancel", {"comment": "by hand"}).status_code == 202
    )
    wait_for(lambda: h.state(host) == "maintenance", 10, "cancelled: the host goes to maintenance")
    done = _get(url, f"/v1/operations/{op['id']}")
    assert done["state"] == "cancelled"
    assert _post(url, f"/v1/operations/{op['id']}/cancel").status_code == 409
    assert len(_get(url, f"/v1/operations?host={host}")["operations"]) == 1, "no new recovery"
    messages = [e["message"] for e in _get(url, f"/v1/events?host={host}")["events"]]
    assert any("cancelled by operator alice: by hand" in m for m in messages), messages


def test_keystone_tokens_map_roles(cloud: Callable[..., Harness]) -> None:
    import openstack  # noqa: PLC0415

    h = cloud(hosts=3, instances=3)
    url = _api(h, keystone={"enabled": True})
    clouds = h.raw["cloud"]["clouds_yaml"]
    name = h.raw["cloud"]["name"]
    config = openstack.config.OpenStackConfig(config_files=[clouds], load_envvars=False)
    admin = openstack.connection.Connection(config=config.get_one(cloud=name)).auth_token
    demo = openstack.connection.Connection(config=config.get_one(cloud=f"{name}-demo")).auth_token
    assert _get(url, "/v1/whoami", admin)["role"] == "operator"
    me = _get(url, "/v1/whoami", demo)
    assert me == {"name": me["name"], "role": "reader", "source": "keystone"}
    assert _post(url, "/v1/cluster/pause", token=demo).status_code == 403
    forged = requests.get(url + "/v1/status", headers={"X-Auth-Token": "gAAAAforged"}, timeout=10)
    assert forged.status_code == 401


def test_a_follower_forwards_to_the_leader(cloud: Callable[..., Harness]) -> None:
    h = cloud(hosts=4, instances=8)
    url = _api(h)
    raw = yaml.safe_load(h.write_config().read_text())
    raw["controller"]["name"] = "e2e-follower"
    path = h.workdir / "follower.yaml"
    path.write_text(yaml.safe_dump(raw))
    follower = build_controller(load_config(path))
    thread = threading.Thread(target=follower.engine.run_forever, daemon=True)
    thread.start()
    try:
        assert follower.api is not None
        other = follower.api.url
        assert other != url
        wait_for(lambda: follower.engine.view.verdict.startswith("standby"), 10, "standby")
        health = requests.get(other + "/healthz", timeout=5).json()
        assert health == {"ok": True, "controller": "e2e-follower", "leading": False}
        status = _get(other, "/v1/status")
        assert status["controller"] == "e2e-controller" and status["leading"]
        assert _get(other, "/v1/hosts") == _get(url, "/v1/hosts")
        host = sorted(h.world.hosts)[0]
        assert _post(other, f"/v1/hosts/{host}/maintenance").status_code == 202
        wait_for(lambda: h.state(host) == "maintenance", 10, "applied by the leader")
    finally:
        follower.engine.stop()
        thread.join(timeout=30)
        follower.close()


def test_https_with_the_configured_certificate(
    cloud: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    from hastack.sim.bmc.tls import ensure_self_signed_cert  # noqa: PLC0415

    h = cloud(hosts=2, instances=2)
    cert, key = ensure_self_signed_cert(h.workdir / "tls", names=("127.0.0.1",))
    url = _api(h, tls={"cert_file": str(cert), "key_file": str(key)})
    assert url.startswith("https://127.0.0.1:")
    r = requests.get(url + "/v1/whoami", headers={"X-Auth-Token": READER}, verify=cert, timeout=5)
    assert r.json()["name"] == "bob"
    # the CLI: refused without the CA, fine with it
    cli = ["status", "--url", url, "--token", READER, "-f", "json"]
    assert main(cli) == 1
    assert "--cacert" in capsys.readouterr().err
    assert main([*cli, "--cacert", str(cert)]) == 0
    assert json.loads(capsys.readouterr().out)["leading"] is True
    plain = url.replace("https://", "http://")
    try:
        answer = requests.get(plain + "/healthz", timeout=5)
    except requests.ConnectionError:
        pass  # refused outright: good
    else:
        assert answer.status_code >= 400, "served plain HTTP on the TLS port"
