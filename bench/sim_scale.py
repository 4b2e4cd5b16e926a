"""How the simulated cloud scales: startup, memory, and API latency at 1,000 and 10,000 hosts.

The simulator runs as its own process (``hastack sim serve``), as an operator would run it; the
client is the real openstacksdk.  Figures are medians over repeated calls.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openstack
import requests
from openstack import config as os_config

SIZES = ((1_000, 10_000), (10_000, 100_000))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _median_ms(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(samples), 1)


def measure(hosts: int, instances: int, bmc: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-sim-{hosts}-"))
    cmd = [
        sys.executable,
        "-m",
        "hastack",
        "sim",
        "serve",
        "--hosts",
        str(hosts),
        "--instances",
        str(instances),
        "--seed",
        "1",
        "--workdir",
        str(workdir),
        "--bmc",
        "on" if bmc else "off",
    ]
    started = time.perf_counter()
    log_path = workdir / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    state_file = workdir / "hastack-sim.json"
    try:
        while not state_file.exists():
            if proc.poll() is not None:
                tail = log_path.read_text()[-2000:]
                raise RuntimeError(f"sim serve exited with {proc.returncode}:\n{tail}")
            if time.perf_counter() - started > 300:
                raise RuntimeError("sim serve did not start within 300 s")
            time.sleep(0.05)
        startup = time.perf_counter() - started
        state = json.loads(state_file.read_text())
        cloud = os_config.OpenStackConfig(config_files=[state["clouds_yaml"]]).get_one(
            cloud="hastack-sim"
        )
        conn = openstack.connection.Connection(config=cloud)
        width = max(2, len(str(hosts)))
        names = [f"compute{i:0{width}d}" for i in range(1, hosts + 1, max(1, hosts // 20))]
        it = iter(names * 10)
        one_host = _median_ms(
            lambda: list(conn.compute.servers(all_projects=True, compute_host=next(it))), 20
        )
        services = _median_ms(lambda: list(conn.compute.services()), 5)
        hypervisors = _median_ms(lambda: list(conn.compute.hypervisors(details=True)), 3)
        providers = _median_ms(lambda: list(conn.placement.resource_providers()), 3)
        # The raw HTTP cost of one host's servers, without openstacksdk's object building.
        token = conn.session.get_token()
        session = requests.Session()
        url = f"{state['base_url']}/compute/v2.1/servers/detail"
        it2 = iter(names * 10)
        raw_one_host = _median_ms(
            lambda: session.get(
                url,
                params={"all_tenants": "1", "host": next(it2)},
                headers={"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.95"},
            ).raise_for_status(),
            20,
        )
        t = time.perf_counter()
        total = sum(1 for _ in conn.compute.servers(all_projects=True, details=True))
        all_servers = round((time.perf_counter() - t) * 1000, 1)
        rss = _rss_mb(proc.pid)
        conn.close()
        return {
            "hosts": hosts,
            "instances": instances,
            "bmc": bmc,
            "startup_s": round(startup, 2),
            "rss_mb": round(rss, 1),
            "one_host_servers_ms": one_host,
            "one_host_servers_raw_http_ms": raw_one_host,
            "all_services_ms": services,
            "all_hypervisors_detail_ms": hypervisors,
            "all_resource_providers_ms": providers,
            "all_servers_paginated_ms": all_servers,
            "all_servers_count": total,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run() -> list[dict[str, Any]]:
    results = []
    for hosts, instances in SIZES:
        results.append(measure(hosts, instances, bmc=True))
    return results
