"""`hastack sim serve` as an operator runs it: the written files, the CLI's failure injection,
and real BMC clients changing the simulated world that openstacksdk then sees."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openstack
import pytest
import yaml
from openstack import config as os_config

from hastack.sim.process import sim_process

HOSTS = 4


def hastack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hastack", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HASTACK_SIM_URL": ""},
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("sim")
    args = ["--hosts", str(HOSTS), "--instances", "24", "--seed", "5",
            "--report-interval", "1", "--service-down-time", "3"]  # fmt: skip
    with sim_process(workdir, args) as proc:
        state = proc.state
        config = yaml.safe_load(Path(state["config"]).read_text())
        cloud = os_config.OpenStackConfig(config_files=[state["clouds_yaml"]])
        conn = openstack.connection.Connection(config=cloud.get_one(cloud="hastack-sim"))
        yield {"workdir": workdir, "state": state, "config": config, "conn": conn}
        conn.close()


def test_serve_writes_private_files_that_describe_the_cloud(sim: dict[str, Any]) -> None:
    state, config = sim["state"], sim["config"]
    for key in ("clouds_yaml", "config"):
        path = Path(state[key])
        assert path.is_absolute() and path.exists()
        assert path.stat().st_mode & 0o077 == 0, f"{path} must not be readable by others"
    computes = [f"compute{i:02d}" for i in range(1, HOSTS + 1)]
    nodes = [f"network{i:02d}" for i in range(1, 4)]  # sim serve's default: 3 network nodes
    assert sorted(config["hosts"]) == computes + nodes
    levels = config["hosts"]["compute01"]["fencing"]
    assert [lvl["devices"][0]["type"] for lvl in levels] == ["ipmi", "redfish"]
    assert levels[0]["devices"][0]["port"] > 0
    served = (sim["workdir"] / "serve.log").read_text()
    for level in levels:
        assert level["devices"][0]["password"] not in served  # secrets stay out of output


def test_cli_fail_hosts_recover(sim: dict[str, Any]) -> None:
    workdir = sim["workdir"]
    out = hastack("sim", "fail", "compute02", "--mode", "isolate", cwd=workdir)
    assert out.returncode == 0, out.stderr
    hosts = json.loads(hastack("sim", "hosts", "-f", "json", cwd=workdir).stdout)
    row = next(h for h in hosts if h["host"] == "compute02")
    assert row["isolated"] is True and row["power"] == "on" and row["running_vms"] > 0
    out = hastack("sim", "recover", "compute02", cwd=workdir)
    assert out.returncode == 0, out.stderr
    hosts = json.loads(hastack("sim", "hosts", "-f", "json", cwd=workdir).stdout)
    assert next(h for h in hosts if h["host"] == "compute02")["isolated"] is False


def test_cli_refuses_bad_input_clearly(sim: dict[str, Any], tmp_path: Path) -> None:
    bad = hastack("sim", "fail", "compute99", "--mode", "power", cwd=sim["workdir"])
    assert bad.returncode == 1 and "compute99" in bad.stderr and "Traceback" not in bad.stderr
    lost = hastack("sim", "fail", "compute01", cwd=tmp_path)  # no state file here
    assert lost.returncode == 1 and "no running simulator found" in lost.stderr
    mode = hastack("sim", "fail", "compute01", "--mode", "meteor", cwd=sim["workdir"])
    assert mode.returncode == 2 and "invalid choice" in mode.stderr


@pytest.mark.wire
@pytest.mark.skipif(shutil.which("fence_ipmilan") is None, reason="fence-agents not installed")
def test_fence_ipmilan_powers_off_a_host_and_nova_sees_it(sim: dict[str, Any]) -> None:
    """A real outside fence agent turns a simulated host off: its heartbeat stops, Nova reports
    the service down, and its VMs no longer run; power on brings it back."""
    conn, workdir = sim["conn"], sim["workdir"]
    dev = sim["config"]["hosts"]["compute03"]["fencing"][0]["devices"][0]

    def fence_stdin(action: str) -> subprocess.CompletedProcess[str]:
        # The stdin protocol keeps the password out of the process list.
        args = (
            f"ip={dev['address']}\nipport={dev['port']}\nusername={dev['username']}\n"
            f"password={dev['password']}\nlanplus=1\naction={action}\npower_wait=0\n"
        )
        return subprocess.run(
            ["fence_ipmilan"], input=args, capture_output=True, text=True, timeout=60, check=False
        )

    assert fence_stdin("status").returncode == 0  # 0: on
    assert fence_stdin("off").returncode == 0
    assert fence_stdin("status").returncode == 2  # 2: off
    hosts = json.loads(hastack("sim", "hosts", "-f", "json", cwd=workdir).stdout)
    row = next(h for h in hosts if h["host"] == "compute03")
    assert row["power"] == "off" and row["running_vms"] == 0
    deadline = time.monotonic() + 15
    state = "up"
    while time.monotonic() < deadline:
        state = next(s for s in conn.compute.services() if s.host == "compute03").state
        if state == "down":
            break
        time.sleep(0.5)
    assert state == "down"
    assert fence_stdin("on").returncode == 0
    assert fence_stdin("status").returncode == 0


def test_connections_are_kept_alive_like_a_real_api(sim: dict[str, Any]) -> None:
    """Two requests on one TCP connection: the web servers in front of real OpenStack APIs keep
    HTTP/1.1 connections open, and so must the simulator, or every client pays a connect."""
    url = urlsplit(sim["state"]["base_url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/identity/v3")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            assert resp.getheader("Connection", "").lower() != "close"
        assert conn.sock is not None  # still the first connection: nobody closed it
    finally:
        conn.close()


def test_a_server_left_running_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    script = (
        "from pathlib import Path\n"
        "from hastack.sim.build import CloudSpec\n"
        "from hastack.sim.runner import RunningSim, SimOptions\n"
        "spec = CloudSpec(hosts=1, instances=0, network_nodes=0, routers=0, networks=0)\n"
        f"workdir = Path({str(tmp_path)!r})\n"
        "options = SimOptions(spec=spec, workdir=workdir, bmc=False, probe=False)\n"
        "RunningSim(options).start()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=30, check=False)
    assert done.returncode == 0
