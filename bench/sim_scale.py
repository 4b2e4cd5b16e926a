"""How the simulated cloud scales: startup, memory, and API latency at 1,000 and 10,000 hosts.

The simulator runs as its own process (``hastack sim serve``), as an operator would run it; the
client is the real openstacksdk.  Figures are medians over repeated calls.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openstack
import requests
from openstack import config as os_config

from hastack.sim.process import sim_process

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
    args = ["--hosts", str(hosts), "--instances", str(instances), "--seed", "1",
            "--bmc", "on" if bmc else "off"]  # fmt: skip
    with sim_process(workdir, args, timeout=300) as sim:
        startup = sim.startup_seconds
        proc = sim.proc
        state = sim.state
        cloud = os_config.OpenStackConfig(config_files=[state["clouds_yaml"]]).get_one(
            cloud="hastack-sim"
        )
        conn = openstack.connection.Connection(config=cloud)
        width = max(2, len(str(hosts)))
        names = [f"compute{i:0{width}d}" for i in range(1, hosts + 1, max(1, hosts // 20))]
        token = conn.session.get_token()
        http = requests.Session()
        http.headers.update({"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.95"})
        base = state["base_url"]

        def get(path: str, **params: str) -> Any:
            resp = http.get(f"{base}{path}", params=params, timeout=120)
            resp.raise_for_status()
            return resp.json()

        def all_pages(path: str, key: str, id_key: str = "id") -> int:
            # Nova pages at max_limit 1,000, as a client must follow them.
            total, params = 0, {"limit": "1000", "all_tenants": "1"}
            while True:
                page = get(path, **params)[key]
                total += len(page)
                if len(page) < 1000:
                    return total
                params["marker"] = page[-1][id_key]

        hosts_cycle = iter(names * 20)
        sdk_cycle = iter(names * 20)
        figures = {
            # the simulator's own answer time, over raw HTTP
            "one_host_servers_ms": _median_ms(
                lambda: get(
                    "/compute/v2.1/servers/detail", all_tenants="1", host=next(hosts_cycle)
                ),
                20,
            ),
            "all_services_ms": _median_ms(lambda: get("/compute/v2.1/os-services"), 5),
            "all_hypervisors_ms": _median_ms(
                lambda: all_pages("/compute/v2.1/os-hypervisors/detail", "hypervisors"), 3
            ),
            "all_providers_ms": _median_ms(lambda: get("/placement/resource_providers"), 3),
            "all_servers_ms": _median_ms(
                lambda: all_pages("/compute/v2.1/servers/detail", "servers"), 1
            ),
            # end to end through openstacksdk, whose object building costs ~1 ms per item
            "sdk_one_host_servers_ms": _median_ms(
                lambda: list(conn.compute.servers(all_projects=True, compute_host=next(sdk_cycle))),
                20,
            ),
            "sdk_all_services_ms": _median_ms(lambda: list(conn.compute.services()), 3),
        }
        total = all_pages("/compute/v2.1/servers/detail", "servers")
        rss = _rss_mb(proc.pid)
        conn.close()
        return {
            "hosts": hosts,
            "instances": total,
            "bmc": bmc,
            "startup_s": round(startup, 2),
            "rss_mb": round(rss, 1),
            **figures,
        }


def run() -> list[dict[str, Any]]:
    results = []
    for hosts, instances in SIZES:
        results.append(measure(hosts, instances, bmc=True))
        print(f"  measured {hosts} hosts: {results[-1]}", flush=True)
    return results
