"""``hastack network``: Neutron agents as hastack sees them, and router rebalancing.

``hastack network rebalance`` reads the routers and L3 agents and prints the moves that would
spread legacy routers so that agents of one AZ differ by at most one (a dry run).  With
``--apply`` it records a request for the leader, which journals the moves as one ``rebalance``
operation, runs them with its usual bounded concurrency and verifies each one.
"""

from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path
from typing import Any

from hastack.cli.output import add_format_options, render_rows


def register(sub: Any) -> None:
    net = sub.add_parser("network", help="network HA: Neutron agents and routers")
    nsub = net.add_subparsers(dest="network_command", metavar="COMMAND")
    nsub.required = True
    agents = nsub.add_parser("agents", help="list L3 and DHCP agents with their load")
    agents.add_argument("--config", type=Path, required=True)
    add_format_options(agents)
    agents.set_defaults(func=cmd_agents)
    reb = nsub.add_parser("rebalance", help="spread legacy routers evenly (dry run by default)")
    reb.add_argument("--config", type=Path, required=True)
    reb.add_argument("--apply", action="store_true", help="ask the leader to make the moves")
    reb.add_argument("--operator", default=getpass.getuser())
    add_format_options(reb)
    reb.set_defaults(func=cmd_rebalance)


def _network(path: Path) -> Any:
    from hastack.cli.serve import _config  # noqa: PLC0415
    from hastack.drivers.openstack.connection import connect  # noqa: PLC0415
    from hastack.drivers.openstack.network import NeutronNetwork  # noqa: PLC0415

    config = _config(path)
    conn = connect(config.cloud.clouds_yaml, config.cloud.name)
    return config, NeutronNetwork(conn, timeout=config.cloud.api_timeout)


def cmd_agents(args: argparse.Namespace) -> int:
    from hastack.domain.network import AgentKind  # noqa: PLC0415
    from hastack.policy.netrecovery import is_down, silent_for  # noqa: PLC0415

    config, network = _network(args.config)
    settings = config.network.settings()
    now = time.time()
    agents = [a for a in network.agents() if a.kind in (AgentKind.L3, AgentKind.DHCP)]
    routers = network.routers()
    nets = network.networks()
    load: dict[str, int] = {}
    for owner in [*routers, *nets]:
        for agent in owner.agents:
            load[agent] = load.get(agent, 0) + 1
    rows = [
        {
            "id": a.id,
            "kind": a.kind.value,
            "host": a.host,
            "zone": a.availability_zone,
            "mode": a.mode.value,
            "state": "down" if is_down(a, now, settings) else "up",
            "admin": "up" if a.admin_state_up else "down",
            "silent_s": round(silent_for(a, now), 1),
            "load": load.get(a.id, 0),
        }
        for a in sorted(agents, key=lambda a: (a.kind, a.host))
    ]
    columns = ["id", "kind", "host", "zone", "mode", "state", "admin", "silent_s", "load"]
    print(render_rows(rows, columns, args.format, args.column))
    return 0


def cmd_rebalance(args: argparse.Namespace) -> int:
    from hastack.policy.network import plan_rebalance  # noqa: PLC0415

    _, network = _network(args.config)
    agents = network.agents()
    hosts = {a.id: a.host for a in agents}
    plan = plan_rebalance(network.routers(), agents)
    rows = [
        {
            "router": m.subject,
            "name": m.name,
            "from": hosts.get(m.source or "", m.source),
            "to": hosts.get(m.target or "", m.target),
            "reason": m.reason,
        }
        for m in plan.moves
    ]
    print(render_rows(rows, ["router", "name", "from", "to", "reason"], args.format, args.column))
    if args.format == "table":
        print(plan.verdict)
    if not args.apply:
        if args.format == "table" and plan.moves:
            print("dry run: nothing moved; --apply asks the leader to make these moves")
        return 0
    from hastack.cli.serve import _store  # noqa: PLC0415
    from hastack.controller import request  # noqa: PLC0415

    store = _store(args.config)
    try:
        request(store, "rebalance", body={"operator": args.operator, "at": time.time()})
    finally:
        store.close()
    print(f"rebalance: recorded for the leader (operator {args.operator})")
    return 0
