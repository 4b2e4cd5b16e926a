"""``make bench``: every benchmark, a table on stdout and the same figures in a JSON file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from bench import agents, api, instance_ha, network_ha, own_ha, sim_scale, sim_virtual


def table(title: str, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(title)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    virtual = sim_virtual.run()
    table("simulator in virtual time (in-process, one simulated hour)", [virtual])
    rows = sim_scale.run()
    table("simulator scale over HTTP (hastack sim serve; ms are medians)", rows)
    ha = instance_ha.run()
    table("instance HA over HTTP: seconds from a power loss (100 VMs on the host)", ha["recovery"])
    table("instance HA: 500 VMs on the failed host (fast profile)", [ha["overhead_500"]])
    table("instance HA: steady state, 10,000 hosts / 100,000 VMs", [ha["steady_10k"]])
    net = network_ha.run()
    table("network HA over HTTP: seconds from a network node's power loss", [net["sim"]])
    table("network HA on real Neutron 29: hastack vs Neutron's own failover", net["oracle"])
    own = own_ha.run()
    table("hastack's own HA: etcd (3 members) and SIGKILLed leaders (3 controllers)", [own])
    fleet = agents.run()
    table("node agents heartbeating to one controller over UDP (1 beat/s each)", fleet["scale"])
    table("heartbeat transports: the receiving side's CPU per heartbeat", fleet["transports"])
    surface = api.run()
    table("REST API: building GET /v1/hosts and /v1/status (once per tick, cached)", surface)
    targets = {**ha["targets"], **net["targets"], **own_ha.targets(own), **agents.targets(fleet)}
    table("targets", [{"target": k, "result": v} for k, v in targets.items()])
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sim_virtual": virtual,
        "sim_scale": rows,
        "instance_ha": ha,
        "network_ha": net,
        "own_ha": own,
        "agents": fleet,
        "api": surface,
    }
    path = (args.out / "bench.json").resolve()
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {path}")
    return 0


raise SystemExit(main())
