"""The ``hastack`` CLI over the REST API, end to end: a simulated cloud served over HTTP, the
controller with its production wiring serving the API on 127.0.0.1, and the CLI
(:func:`hastack.cli.main.main`) called in-process, its output captured."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hastack.cli.main import main
from hastack.sim import faults
from tests.functional.harness import Harness, cloud_factory, wait_for

pytestmark = [pytest.mark.wire, pytest.mark.timeout(180)]

OPERATOR = "operator-token-0123456789"
READER = "reader-token-0123456789"
Cli = Callable[..., tuple[int, str, str]]


def with_api(h: Harness, *, keystone: bool = False) -> Harness:
    h.raw["api"] = {
        "listen": "127.0.0.1:0",
        "tokens": [
            {"name": "alice", "role": "operator", "token": OPERATOR},
            {"name": "bob", "role": "reader", "token": READER},
        ],
        "keystone": {"enabled": keystone},
    }
    h.start()
    return h


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One cloud for the tests that leave it as they found it (Keystone tokens accepted)."""
    clouds = cloud_factory(tmp_path_factory.mktemp("cli-api"))
    h = with_api(next(clouds)(hosts=6, instances=20), keystone=True)
    yield h
    next(clouds, None)  # stops the controller and the simulator


def runner(h: Harness, capsys: pytest.CaptureFixture[str]) -> Cli:
    assert h.controller is not None and h.controller.api is not None
    url = h.controller.api.url

    def cli(*argv: str, token: str | None = OPERATOR) -> tuple[int, str, str]:
        capsys.readouterr()
        auth = ["--token", token] if token else []
        code = main([*argv, "--url", url, *auth])
        out, err = capsys.readouterr()
        return code, out, err

    return cli


@pytest.fixture
def cli(shared: Harness, capsys: pytest.CaptureFixture[str]) -> Cli:
    return runner(shared, capsys)


def table_rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()[3:-1]]


# ---------------------------------------------------------------- reads


def test_host_list_as_a_table_as_json_and_picked_columns(shared: Harness, cli: Cli) -> None:
    hosts = sorted(shared.world.hosts)
    code, out, _ = cli("host", "list")
    assert code == 0
    header = [c.strip() for c in out.splitlines()[1].strip("|").split("|")]
    assert header == ["name", "state", "since", "reason", "segment", "maintenance", "operation"]
    assert [(r[0], r[1], r[4]) for r in table_rows(out)] == [(h, "ok", "all") for h in hosts]

    code, out, _ = cli("host", "list", "-f", "json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == hosts
    assert all(r["state"] == "ok" and r["maintenance"] is False for r in rows)

    code, out, _ = cli("host", "list", "-f", "value", "-c", "name", "-c", "state")
    assert code == 0
    assert out.splitlines() == [f"{h} ok" for h in hosts]

    code, out, _ = cli("host", "list", "--state", "failed", "-f", "json", token=READER)
    assert (code, json.loads(out)) == (0, [])


def test_host_show_has_signals_fencing_and_operations(shared: Harness, cli: Cli) -> None:
    code, out, _ = cli("host", "show", "compute01", "-f", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["name"] == "compute01" and doc["state"] == "ok"
    assert {s["signal"] for s in doc["signals"]} >= {"nova", "probe"}
    assert [[d["type"] for d in level] for level in doc["fence_levels"]] == [["ipmi"], ["redfish"]]
    assert doc["operations"] == []

    code, out, _ = cli("host", "show", "compute01")
    fields = {r[0]: r[1] for r in table_rows(out) if r[0]}
    assert fields["state"] == "ok"
    assert fields["fence_levels"].startswith("level 1: ipmi 127.0.0.1:")
    assert "level 2: redfish https://" in out

    code, _, err = cli("host", "show", "compute99")
    assert code == 1
    assert err.startswith("hastack: error: ") and "compute99" in err


def test_what_if_on_the_busiest_host_plans_every_instance(shared: Harness, cli: Cli) -> None:
    host = shared.busiest_host()
    instances = shared.instances_on(host)
    code, out, _ = cli("what-if", host, "-f", "json")
    assert code == 0
    plan = json.loads(out)
    assert plan["host"] == host
    assert sorted(e["instance"] for e in plan["evacuations"]) == instances
    assert plan["unplaceable"] == [] and plan["refused"] == []
    assert all(e["target"] not in (None, host) for e in plan["evacuations"])

    code, out, _ = cli("what-if", host, token=READER)
    assert code == 0
    assert len(table_rows(out.split("\nfencing: ")[0])) == len(instances)
    assert out.rstrip().splitlines()[-1] == f"verdict: {plan['verdict']}"


# ---------------------------------------------------------------- actions


def test_maintenance_on_then_the_host_list_shows_it(shared: Harness, cli: Cli) -> None:
    host = sorted(shared.world.hosts)[-1]

    def listed() -> dict[str, object]:
        code, out, _ = cli("host", "list", "-f", "json", "-c", "name", "-c", "state")
        assert code == 0
        return {r["name"]: r["state"] for r in json.loads(out)}

    code, out, _ = cli("host", "maintenance-on", host, "--comment", "new DIMMs")
    assert code == 0
    assert out.startswith(f"maintenance on {host}: recorded for the leader (operator alice)")
    wait_for(lambda: listed()[host] == "maintenance", 10, f"{host} listed in maintenance")
    code, out, _ = cli("host", "show", host, "-c", "maintenance", "-f", "value")
    assert out.strip() == "True"

    assert cli("host", "maintenance-off", host)[0] == 0
    wait_for(lambda: listed()[host] == "ok", 10, f"{host} listed ok again")
    code, _, err = cli("host", "maintenance-off", host)
    assert code == 1 and "not in maintenance" in err


def test_pause_and_resume_show_in_status(cli: Cli) -> None:
    def status() -> dict[str, object]:
        code, out, _ = cli("status", "-f", "json", token=READER)
        assert code == 0
        return dict(json.loads(out))

    def paused() -> bool:  # the request is recorded, and the leader has ticked on it
        doc = status()
        return doc["paused"] is True and "paused by an operator" in str(doc["verdict"])

    assert status()["paused"] is False
    code, out, _ = cli("pause", "--comment", "storage upgrade")
    assert code == 0 and out.startswith("pause: recorded for the leader (operator alice)")
    try:
        wait_for(paused, 10, "status says paused")
        code, out, _ = cli("status")
        assert ["paused", "True"] in table_rows(out)
    finally:
        assert cli("resume")[0] == 0
    wait_for(lambda: status()["paused"] is False, 10, "status says not paused")


def test_a_reader_is_refused_an_action(shared: Harness, cli: Cli) -> None:
    code, out, err = cli("pause", token=READER)
    assert code == 1 and out == ""
    assert err.startswith("hastack: error: ") and "operator role" in err
    assert err.count("\n") == 1
    code, _, err = cli("host", "maintenance-on", "compute01", token=READER)
    assert code == 1 and "operator role" in err
    assert shared.state("compute01") == "ok"


def test_no_token_or_a_wrong_one_is_explained(cli: Cli) -> None:
    code, _, err = cli("status", token=None)
    assert code == 1 and "no token given" in err and "--token-file" in err
    code, _, err = cli("status", token="not-a-token-at-all-0000")
    assert code == 1 and "did not accept the token" in err


def test_a_token_file(shared: Harness, cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(READER + "\n")
    code, out, _ = cli("status", "-f", "json", "--token-file", str(path), token=None)
    assert code == 0 and json.loads(out)["leading"] is True
    code, _, err = cli("status", "--token-file", str(tmp_path / "missing"), token=None)
    assert code == 1 and "cannot read the token file" in err


def test_keystone_tokens_from_clouds_yaml(
    shared: Harness, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(shared.sim.files["clouds_yaml"]))
    name = shared.raw["cloud"]["name"]
    code, _, err = cli("ack-cliff", "--os-cloud", f"{name}-demo", token=None)  # a member
    assert code == 1 and "operator role" in err
    code, out, _ = cli("ack-cliff", "--os-cloud", name, "--comment", "by keystone", token=None)
    assert code == 0, out
    code, out, _ = cli("event", "list", "--host", "cluster", "-f", "json")
    mine = [e for e in json.loads(out) if e["message"] == "request cliff-ack: by keystone"]
    assert [e["by"] for e in mine] == ["operator admin"]


def test_an_unreachable_api_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed: nothing listens there
    url = f"http://127.0.0.1:{port}"
    assert main(["host", "list", "--url", url, "--token", READER]) == 1
    err = capsys.readouterr().err
    assert err == f"hastack: error: cannot reach the hastack API at {url}: Connection refused\n"


def test_event_list_shows_requests_with_the_operator(cli: Cli) -> None:
    assert cli("ack-cliff", "--comment", "rack 7 switch replaced")[0] == 0
    code, out, _ = cli("event", "list", "--host", "cluster", "--since", "10m", "-f", "json")
    assert code == 0
    events = json.loads(out)
    assert ("request cliff-ack: rack 7 switch replaced", "operator alice", "request") in [
        (e["message"], e["by"], e["kind"]) for e in events
    ]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)  # oldest first
    assert {e["subject"] for e in events} == {"cluster"}

    code, out, _ = cli("event", "list", "--limit", "1", "-c", "by", "-c", "message", token=READER)
    assert code == 0 and len(table_rows(out)) == 1
    code, out, _ = cli("event", "list", "--since", "2000000000", "-f", "json")  # the future
    assert (code, json.loads(out)) == (0, [])


def test_bad_arguments_are_refused_before_any_request(cli: Cli) -> None:
    with pytest.raises(SystemExit):
        cli("event", "list", "--since", "soon")
    with pytest.raises(SystemExit):
        cli("operation", "list", "--limit", "0")
    with pytest.raises(SystemExit):
        cli("host", "list", "--state", "sleepy")


# ---------------------------------------------------------------- a recovery


def test_confirm_off_waits_for_the_recovery_it_unblocks(
    cloud: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """Power lost and the BMC dead: nothing can prove the host off but the operator.  The
    CLI confirms it, then follows the recovery to its end, one line per change."""
    h = cloud(hosts=6, instances=20)
    h.raw["recovery"] = {"fence_timeout": 2.0, "fence_attempts": 1}  # a dead BMC fails sooner
    cli = runner(with_api(h), capsys)
    host = h.busiest_host()
    victims = h.instances_on(host)
    faults.fail(h.world, host, "bmc-dead")
    faults.fail(h.world, host, "power")
    h.wait_state(host, "fence_failed", 60)

    code, out, _ = cli("host", "confirm-off", host, "--yes", "--wait", "--comment", "PDU off")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"confirm-off {host}: recorded for the leader (operator alice)"
    progress = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in lines[2:-1]]
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines[2:-1]), lines
    assert progress[0].startswith("fence: failed (") and progress[1] == f"{host}: fence_failed"
    fenced = next(n for n, p in enumerate(progress) if p.startswith("fence: done ("))
    assert progress[fenced] == f"fence: done ({host} confirmed off by operator alice)"
    all_done = progress.index(f"evacuations {len(victims)}/{len(victims)} done, 0 failed")
    assert fenced < progress.index(f"{host}: recovering") < all_done
    assert all_done < progress.index(f"{host}: recovered")
    assert lines[-1].startswith(f"{host} recovered: {len(victims)}/{len(victims)} instances")
    h.assert_moved_once(host, victims)

    code, out, _ = cli("operation", "list", "--host", host, "-f", "json")
    (op,) = json.loads(out)
    assert (op["state"], op["host_state"], op["done"]) == ("open", "recovered", len(victims))
    code, out, _ = cli("operation", "show", op["id"], token=READER)
    fields = {r[0]: r[1] for r in table_rows(out) if r[0]}
    assert fields["host"] == host and fields["steps"].startswith("fence: done")
    code, out, _ = cli("operation", "show", op["id"], "--watch", token=READER)
    assert code == 0 and out.splitlines()[-1].startswith(f"{host} recovered: ")
    code, out, _ = cli("event", "list", "--host", host, "-f", "json", token=READER)
    assert ("request confirm: PDU off", "operator alice") in [
        (e["message"], e["by"]) for e in json.loads(out)
    ]
