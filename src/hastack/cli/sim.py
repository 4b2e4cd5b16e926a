"""``hastack sim``: run the simulated cloud and inject failures into it.

``serve`` runs in the foreground until interrupted; ``fail``, ``recover``, ``hosts`` and
``api-fault`` talk to a running simulator through its control endpoint, found with ``--url``,
``$HASTACK_SIM_URL`` or the state file ``hastack-sim.json`` that ``serve`` wrote into its
working directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import requests

from hastack.cli.output import add_format_options, render_one, render_rows
from hastack.sim.build import CloudSpec
from hastack.sim.faults import MODES
from hastack.sim.files import STATE_FILE, read_state
from hastack.sim.neutron import AGENT_NAMES, VRRP_FAULTS, NeutronConfig
from hastack.sim.runner import RunningSim, SimOptions
from hastack.sim.world import SimConfig


class SimCliError(Exception):
    pass


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("sim", help="the simulated OpenStack cloud")
    ssub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    ssub.required = True

    serve = ssub.add_parser("serve", help="run a simulated cloud on 127.0.0.1")
    serve.add_argument("--hosts", type=_positive, default=20, help="compute hosts (default 20)")
    serve.add_argument(
        "--instances", type=_non_negative, default=200, help="instances (default 200)"
    )
    serve.add_argument("--seed", type=int, default=0, help="seed: same seed, same cloud")
    serve.add_argument("--azs", type=_positive, default=1, help="availability zones (default 1)")
    serve.add_argument("--port", type=_port, default=0, help="HTTP port (default: a free one)")
    serve.add_argument("--workdir", type=Path, default=Path(), help="where to write the files")
    serve.add_argument("--cloud-name", default="hastack-sim", help="name in clouds.yaml")
    serve.add_argument(
        "--bmc", choices=("auto", "on", "off"), default="auto", help="serve IPMI/Redfish BMCs"
    )
    serve.add_argument("--ipmi-port-base", type=_port, default=0, help="first IPMI UDP port")
    serve.add_argument("--redfish-port", type=_port, default=0, help="Redfish HTTPS port")
    serve.add_argument("--report-interval", type=_positive_float, default=10.0)
    serve.add_argument("--service-down-time", type=_positive_float, default=60.0)
    serve.add_argument("--evacuate-seconds", type=_positive_float, default=3.0)
    serve.add_argument(
        "--rpc-response-timeout",
        type=_positive_float,
        default=60.0,
        help="how long an RPC to a dead compute waits before failing (default 60)",
    )
    serve.add_argument(
        "--host-boot-seconds",
        type=_positive_float,
        default=5.0,
        help="from power on to nova-compute reporting again (default 5)",
    )
    serve.add_argument(
        "--ha-enabled-ratio",
        type=float,
        default=1.0,
        help="fraction of instances tagged HA_Enabled=True (default 1.0)",
    )
    serve.add_argument("--host-vcpus", type=int, default=32, help="physical cores per host")
    serve.add_argument("--host-memory-mb", type=int, default=131072, help="RAM per host")
    for flag, count, what in (
        ("--network-nodes", 3, "Neutron network nodes"),
        ("--routers", 20, "routers, each with a gateway, an interface and a floating IP"),
        ("--networks", 10, "tenant networks"),
        ("--ha-routers", 0, "of the routers, how many are HA (VRRP)"),
    ):
        serve.add_argument(
            flag, type=_non_negative, default=count, help=f"{what} (default {count})"
        )
    serve.add_argument(
        "--dvr",
        action="store_true",
        help="DVR: dvr_snat L3 agents on network nodes, dvr L3 + OVS agents on computes, "
        "distributed routers",
    )
    for flag, default, what in (
        ("--agent-report-interval", 30.0, "seconds between Neutron agent heartbeats"),
        ("--agent-down-time", 75.0, "silence after which Neutron reports an agent dead"),
    ):
        serve.add_argument(
            flag, type=_positive_float, default=default, help=f"{what} (default {default:g})"
        )
    serve.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    serve.set_defaults(func=cmd_serve)

    _register_faults(ssub)

    hosts = ssub.add_parser("hosts", help="the hosts' physical state, as the simulator knows it")
    _add_url(hosts)
    add_format_options(hosts)
    hosts.set_defaults(func=cmd_hosts)

    fault = ssub.add_parser("api-fault", help="make an API endpoint fail or lag")
    fault.add_argument("action", choices=("add", "list", "clear"))
    fault.add_argument("--service", default="*", help="compute, placement, image, identity or *")
    fault.add_argument("--method", default="*")
    fault.add_argument("--path", default="", help="regular expression searched in the path")
    fault.add_argument("--status", type=int, help="HTTP status to answer, e.g. 503")
    fault.add_argument("--latency", type=float, default=0.0, help="seconds to delay")
    fault.add_argument("--count", type=int, help="affect only this many requests")
    _add_url(fault)
    add_format_options(fault)
    fault.set_defaults(func=cmd_api_fault)


def _register_faults(ssub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fail = ssub.add_parser("fail", help="inject a failure on a host")
    fail.add_argument("host")
    fail.add_argument("--mode", choices=MODES, default="power")
    fail.add_argument(
        "--agent",
        choices=tuple(AGENT_NAMES),
        help="with --mode agent-dead: which Neutron agent dies (default l3)",
    )
    _add_url(fail)
    fail.set_defaults(func=cmd_fail)

    recover = ssub.add_parser("recover", help="undo every failure on a host")
    recover.add_argument("host")
    _add_url(recover)
    recover.set_defaults(func=cmd_recover)

    vrrp = ssub.add_parser("vrrp", help="force an HA router's VRRP state (keepalived)")
    vrrp.add_argument("router", help="router id")
    vrrp.add_argument("--state", choices=VRRP_FAULTS, required=True)
    _add_url(vrrp)
    vrrp.set_defaults(func=cmd_vrrp)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number (0 for any free port)")
    return value


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="simulator base URL (default: $HASTACK_SIM_URL or state file)"
    )
    parser.add_argument("--workdir", type=Path, default=Path(), help="where serve wrote its files")


def cmd_serve(args: argparse.Namespace) -> int:
    spec = CloudSpec(
        hosts=args.hosts,
        instances=args.instances,
        seed=args.seed,
        azs=args.azs,
        ha_enabled_ratio=args.ha_enabled_ratio,
        host_vcpus=args.host_vcpus,
        host_memory_mb=args.host_memory_mb,
        network_nodes=args.network_nodes,
        routers=args.routers,
        networks=args.networks,
        ha_routers=args.ha_routers,
        dvr=args.dvr,
    )
    timing = SimConfig(
        report_interval=args.report_interval,
        service_down_time=args.service_down_time,
        evacuate_seconds=args.evacuate_seconds,
        host_boot_seconds=args.host_boot_seconds,
        rpc_response_timeout=args.rpc_response_timeout,
        neutron=NeutronConfig(
            report_interval=args.agent_report_interval, agent_down_time=args.agent_down_time
        ),
    )
    options = SimOptions(
        spec=spec,
        timing=timing,
        workdir=args.workdir,
        cloud_name=args.cloud_name,
        port=args.port,
        bmc={"auto": None, "on": True, "off": False}[args.bmc],
        ipmi_port_base=args.ipmi_port_base,
        redfish_port=args.redfish_port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with RunningSim(options) as sim:
        print(
            f"simulated cloud up: {len(sim.world.hosts)} hosts, "
            f"{len(sim.world.instances)} instances"
        )
        for key, value in sim.summary().items():
            print(f"  {key:<12} {value}")
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(args.duration)
    return 0


def control_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url.rstrip("/") + "/control"
    env = os.environ.get("HASTACK_SIM_URL")
    if env:
        return env.rstrip("/") + "/control"
    try:
        state = read_state(args.workdir)
    except ValueError as exc:
        raise SimCliError(str(exc)) from None
    if not state or "control_url" not in state:
        raise SimCliError(
            f"no running simulator found: pass --url, set HASTACK_SIM_URL, or run from the "
            f"directory where `hastack sim serve` wrote {STATE_FILE}"
        )
    return str(state["control_url"])


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    try:
        resp = requests.request(method, url, json=body, timeout=30)
    except requests.RequestException as exc:
        raise SimCliError(f"cannot reach the simulator at {url}: {exc}") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json()
            message = detail.get("error", {}).get("message") or json.dumps(detail)
        except ValueError:
            message = resp.text
        raise SimCliError(f"{resp.status_code}: {message}")
    return resp.json() if resp.content else None


def cmd_fail(args: argparse.Namespace) -> int:
    body = {"mode": args.mode}
    if args.agent is not None:
        body["agent"] = args.agent
    result = _call("POST", f"{control_url(args)}/hosts/{args.host}/fail", body)
    print(f"{result['host']}: {result['mode']} failure injected")
    return 0


def cmd_vrrp(args: argparse.Namespace) -> int:
    url = f"{control_url(args)}/routers/{args.router}/vrrp"
    result = _call("POST", url, {"state": args.state})
    print(f"{result['router']}: masters on {', '.join(result['masters']) or 'no host'}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    result = _call("POST", f"{control_url(args)}/hosts/{args.host}/recover", {})
    print(f"{result['host']}: recovering")
    return 0


HOST_COLUMNS = (
    "host",
    "power",
    "hung",
    "isolated",
    "compute_running",
    "service_up",
    "bmc",
    "instances",
    "running_vms",
)


def cmd_hosts(args: argparse.Namespace) -> int:
    result = _call("GET", f"{control_url(args)}/hosts")
    print(render_rows(result["hosts"], HOST_COLUMNS, args.format, args.column))
    return 0


def cmd_api_fault(args: argparse.Namespace) -> int:
    url = f"{control_url(args)}/api-faults"
    if args.action == "list":
        result = _call("GET", url)
        cols = ("id", "service", "method", "path", "status", "latency", "count")
        print(render_rows(result["api_faults"], cols, args.format, args.column))
    elif args.action == "clear":
        _call("DELETE", url)
        print("api faults cleared")
    else:
        body = {
            "service": args.service,
            "method": args.method,
            "path": args.path,
            "status": args.status,
            "latency": args.latency,
            "count": args.count,
        }
        print(render_one(_call("POST", url, body), args.format, args.column))
    return 0
