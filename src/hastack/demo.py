"""``hastack demo``: the simulated cloud, a power loss and a kernel hang, seen from outside.

It starts a 20-host, 200-VM simulated cloud with a BMC per host, then shows what an operator's
tools see, using only outside clients: openstacksdk against the Nova API, ``ipmitool`` against
the IPMI BMCs, sushy against Redfish.  It injects a power loss on one host and a kernel hang on
another and follows both until Nova reports the services down; the instances on them still
read ACTIVE in Nova although nothing runs them — the gap hastack exists to close.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import openstack
import sushy
import urllib3
from openstack import config as os_config

from hastack.sim import faults
from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions
from hastack.sim.world import SimConfig

POWER_HOST = "compute03"
HANG_HOST = "compute07"


def _ipmi_power(sim: RunningSim, host: str) -> str:
    h = sim.world.hosts[host]
    if shutil.which("ipmitool") is None:
        return "ipmitool not installed"
    proc = subprocess.run(
        [
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            str(h.ipmi_port),
            "-U",
            h.bmc_username,
            "-E",
            "-C",
            "3",
            "power",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        env={"IPMI_PASSWORD": h.bmc_password, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    return (proc.stdout or proc.stderr).strip()


def _redfish_power(sim: RunningSim, host: str) -> str:
    urllib3.disable_warnings()
    h = sim.world.hosts[host]
    assert sim.farm is not None
    # Basic auth: no Redfish session is left for sushy to close after the demo stops.
    auth = sushy.auth.BasicAuth(username=h.bmc_username, password=h.bmc_password)
    root = sushy.Sushy(f"{sim.farm.redfish_url}/redfish/v1", auth=auth, verify=False)
    return str(root.get_system(sim.farm.systems_uri(host)).power_state)


def _nova_view(conn: openstack.connection.Connection, hosts: list[str]) -> str:
    services = {s.host: s for s in conn.compute.services()}
    rows = []
    for host in hosts:
        svc = services[host]
        vms = list(conn.compute.servers(all_projects=True, compute_host=host))
        active = sum(1 for v in vms if v.status == "ACTIVE")
        rows.append(
            f"    {host}: service {svc.state:<4} updated_at {svc.updated_at}  "
            f"{len(vms)} servers, {active} ACTIVE per Nova"
        )
    return "\n".join(rows)


def run(workdir: Path | None = None) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="hastack-demo-"))
    options = SimOptions(
        spec=CloudSpec(hosts=20, instances=200, seed=42, ha_enabled_ratio=0.6),
        timing=SimConfig(report_interval=2, service_down_time=12),
        workdir=workdir,
    )
    print("== hastack demo: a simulated OpenStack cloud, two failures, seen from outside ==")
    with RunningSim(options) as sim:
        for key, value in sim.summary().items():
            print(f"  {key:<12} {value}")
        cloud = os_config.OpenStackConfig(config_files=[str(sim.files["clouds_yaml"])])
        conn = openstack.connection.Connection(config=cloud.get_one(cloud=options.cloud_name))
        hosts = [POWER_HOST, HANG_HOST]
        print("\nBefore: Nova's view, and the BMCs over IPMI and Redfish")
        print(_nova_view(conn, hosts))
        for host in hosts:
            print(
                f"    {host}: ipmitool says '{_ipmi_power(sim, host)}', "
                f"Redfish says '{_redfish_power(sim, host)}'"
            )
        print(f"\nInjecting: power loss on {POWER_HOST}, kernel hang on {HANG_HOST}")
        faults.fail(sim.world, POWER_HOST, "power")
        faults.fail(sim.world, HANG_HOST, "hang")
        start = time.monotonic()
        while True:
            time.sleep(2)
            states = {s.host: s.state for s in conn.compute.services() if s.host in hosts}
            print(f"  t+{time.monotonic() - start:4.1f}s  Nova service state: {states}")
            if all(v == "down" for v in states.values()) or time.monotonic() - start > 60:
                break
        print("\nAfter: Nova's view, the BMCs, and the truth only the simulator knows")
        print(_nova_view(conn, hosts))
        for host in hosts:
            running = sum(1 for i in sim.world.instances.values() if host in i.running_on)
            print(
                f"    {host}: ipmitool says '{_ipmi_power(sim, host)}', "
                f"Redfish says '{_redfish_power(sim, host)}', VMs really running: {running}"
            )
        print("\nNova still lists those servers ACTIVE. On the powered-off host they are dead;")
        print("on the hung host they are frozen but alive, so evacuating them without fencing")
        print("first would run each VM twice. Detecting, fencing and evacuating is hastack's job.")
        conn.close()
    return 0
