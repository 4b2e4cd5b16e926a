#!/usr/bin/env python3
"""Smoke test of the real-Neutron oracle (tests/oracle/neutron_server.py).

Run with the dev venv's interpreter (it needs only openstacksdk):

    scripts/oracle-venv.sh neutron
    .venv/bin/python tests/oracle/neutron_smoke.py [--hosts 3] [--auto-failover on|off]

Starts the server as a subprocess from ``.venv-neutron-oracle`` (override with
NEUTRON_ORACLE_VENV), talks to it with openstacksdk through the clouds.yaml it writes and
prints timings: agents, network/subnet/router/gateway/interface/floating IP, router to L3
agent scheduling (and a manual move), networks on DHCP agents, a network node's death
(its agents' heartbeats stopped through the control endpoint) and, with automatic
failover on, how long Neutron takes to reschedule the router off the dead agent.
Exits non-zero on the first failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import openstack

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV = pathlib.Path(os.environ.get("NEUTRON_ORACLE_VENV", REPO / ".venv-neutron-oracle"))
SERVER = REPO / "tests" / "oracle" / "neutron_server.py"
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.2f}s] {msg}", flush=True)


def check(cond: object, msg: str) -> None:
    if not cond:
        say(f"FAIL: {msg}")
        raise SystemExit(1)


def timed(label: str, fn, *args, **kwargs):
    t = time.monotonic()
    res = fn(*args, **kwargs)
    say(f"{label}: {time.monotonic() - t:.3f} s")
    return res


def wait_for(label: str, pred, timeout: float, poll: float = 0.25):
    t = time.monotonic()
    while True:
        res = pred()
        if res:
            return res, time.monotonic() - t
        if time.monotonic() - t > timeout:
            say(f"FAIL: timed out after {timeout} s waiting for {label}")
            raise SystemExit(1)
        time.sleep(poll)


def start_server(args, workdir: str):
    python = VENV / "bin" / "python"
    check(python.exists(), f"{python} missing: run scripts/oracle-venv.sh neutron")
    cmd = [
        str(python),
        str(SERVER),
        "--hosts",
        str(args.hosts),
        "--workdir",
        workdir,
        "--agent-down-time",
        str(args.agent_down_time),
        "--report-interval",
        str(args.report_interval),
        "--auto-failover",
        args.auto_failover,
        "--exit-on-stdin-eof",
        "--max-lifetime",
        "900",
    ]
    say("starting: " + " ".join(cmd))
    err = open(os.path.join(workdir, "server.stderr"), "wb")  # noqa: SIM115 (the child keeps it)
    t = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True
    )
    buf = b""
    while b"\n" not in buf:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                check(False, f"server exited ({proc.wait(5)}) before ready; see {err.name}")
            buf += chunk
        elif proc.poll() is not None:
            check(False, f"server exited ({proc.returncode}) before ready; see {err.name}")
        check(time.monotonic() - t < 180, "server not ready within 180 s")
    info = json.loads(buf.split(b"\n", 1)[0])
    check(info.get("ready"), f"server failed: {info.get('error')}")
    say(
        f"server ready: wall {time.monotonic() - t:.2f} s (server-side startup "
        f"{info['startup_seconds']} s), {info['network_url']}"
    )
    return proc, info


def stop_server(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def control(info, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body or {}).encode() if body is not None else None
    req = urllib.request.Request(
        info["control_url"] + "/control" + path,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def l3_hosts(net, router) -> list[str]:
    return sorted(a.host for a in net.routers_hosting_l3_agents(router))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--agent-down-time", type=int, default=6)
    p.add_argument("--report-interval", type=float, default=2.0)
    p.add_argument("--auto-failover", choices=("on", "off"), default="on")
    p.add_argument("--routers", type=int, default=5, help="extra routers to time")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="neutron-oracle-")
    os.makedirs(workdir, exist_ok=True)
    proc, info = start_server(args, workdir)
    try:
        return run(args, info)
    finally:
        stop_server(proc)
        say(f"server stopped; workdir {workdir} (neutron.log there)")


def run(args, info) -> int:
    os.environ["OS_CLIENT_CONFIG_FILE"] = info["clouds_yaml"]
    conn = timed("connect (token)", openstack.connect, cloud="oracle")
    net = conn.network

    # -- agents -----------------------------------------------------------------------
    agents = timed("list agents", lambda: list(net.agents()))
    by_type: dict[str, list] = {}
    for a in agents:
        by_type.setdefault(a.agent_type, []).append(a)
    say("agents: " + ", ".join(f"{k} x{len(v)}" for k, v in sorted(by_type.items())))
    check(len(agents) == 4 * args.hosts, f"expected {4 * args.hosts} agents")
    check(all(a.is_alive for a in agents), "all agents alive")

    # -- topology ---------------------------------------------------------------------
    public = timed(
        "create external flat network 'public'",
        net.create_network,
        name="public",
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="public",
    )
    timed(
        "create public subnet",
        net.create_subnet,
        network_id=public.id,
        ip_version=4,
        cidr="172.24.4.0/24",
        gateway_ip="172.24.4.1",
        is_dhcp_enabled=False,
        name="public-subnet",
    )
    private = timed("create tenant network (vxlan)", net.create_network, name="private")
    check(private.provider_network_type == "vxlan", "tenant network is vxlan")
    subnet = timed(
        "create private subnet",
        net.create_subnet,
        network_id=private.id,
        ip_version=4,
        cidr="10.0.0.0/24",
        name="private-subnet",
    )
    router = timed(
        "create router with external gateway",
        net.create_router,
        name="router1",
        external_gateway_info={"network_id": public.id},
    )
    timed("add router interface", net.add_interface_to_router, router, subnet_id=subnet.id)
    port = timed(
        "create port (a 'VM' NIC)", net.create_port, network_id=private.id, name="vm1-port"
    )
    fip = timed(
        "create floating IP on the port",
        net.create_ip,
        floating_network_id=public.id,
        port_id=port.id,
    )
    say(f"floating IP {fip.floating_ip_address} -> {port.fixed_ips[0]['ip_address']}")

    # -- L3 scheduling ----------------------------------------------------------------
    hosts = timed("GET routers/{id}/l3-agents", l3_hosts, net, router)
    check(len(hosts) == 1, f"router on exactly one L3 agent (got {hosts})")
    say(f"router1 scheduled to L3 agent on {hosts[0]}")
    l3 = {a.host: a for a in net.agents(agent_type="L3 agent")}
    other = next(h for h in sorted(l3) if h != hosts[0])
    timed("remove router from its L3 agent", net.remove_router_from_agent, l3[hosts[0]], router)
    check(l3_hosts(net, router) == [], "router unscheduled")
    timed(f"add router to L3 agent on {other}", net.add_router_to_agent, l3[other], router)
    check(l3_hosts(net, router) == [other], "router moved")
    say(f"router1 now on {other}")

    created = []
    t = time.monotonic()
    for n in range(args.routers):
        r = net.create_router(name=f"r{n}", external_gateway_info={"network_id": public.id})
        created.append(r)
    if args.routers:
        say(
            f"create {args.routers} routers with gateway: "
            f"{(time.monotonic() - t) / args.routers:.3f} s each"
        )
        spread: dict[str, int] = {}
        for r in created:
            for h in l3_hosts(net, r):
                spread[h] = spread.get(h, 0) + 1
        say(f"routers per L3 host (LeastRoutersScheduler): {dict(sorted(spread.items()))}")

    # -- DHCP -------------------------------------------------------------------------
    dhcp_hosts = timed(
        "GET networks/{id}/dhcp-agents",
        lambda: sorted(a.host for a in net.network_hosting_dhcp_agents(private)),
    )
    say(f"private network on DHCP agent(s): {dhcp_hosts}")
    check(dhcp_hosts, "private network scheduled to a DHCP agent")
    for a in net.agents(agent_type="DHCP agent"):
        nets = [n.name for n in net.dhcp_agent_hosting_networks(a)]
        say(f"  DHCP agent {a.host}: networks {nets}")

    # -- node death -------------------------------------------------------------------
    victim = other
    say(
        f"failing {victim} (its agents stop heartbeating); agent_down_time = "
        f"{args.agent_down_time} s, auto failover {args.auto_failover}"
    )
    stranded = [r.name for r in created if victim in l3_hosts(net, r)]
    t_fail = time.monotonic()
    control(info, f"/hosts/{victim}/fail", {"mode": "power"})

    def victim_dead():
        ags = [a for a in net.agents(host=victim)]
        return ags and all(not a.is_alive for a in ags) and ags

    wait_for("victim's agents alive=false", victim_dead, 60)
    say(f"{victim}'s 4 agents alive=false after {time.monotonic() - t_fail:.1f} s")
    others_alive = all(a.is_alive for a in net.agents() if a.host != victim)
    check(others_alive, "the other hosts' agents stay alive")

    if args.auto_failover == "on":

        def moved():
            hs = l3_hosts(net, router)
            return hs and victim not in hs and hs

        new_hosts, _ = wait_for("router rescheduled off the dead agent", moved, 120, 0.5)
        say(
            f"FAILOVER: Neutron rescheduled router1 {victim} -> {new_hosts[0]} "
            f"{time.monotonic() - t_fail:.1f} s after the heartbeats stopped"
        )
        if stranded:

            def all_moved():
                return not [r for r in created if victim in l3_hosts(net, r)]

            wait_for("other routers off the dead agent", all_moved, 60, 0.5)
        say(
            f"all routers off {victim} after {time.monotonic() - t_fail:.1f} s "
            f"(were on it: {stranded})"
        )
        if victim in dhcp_hosts:

            def dhcp_moved():
                hs = [a.host for a in net.network_hosting_dhcp_agents(private)]
                return hs and victim not in hs and hs

            hs, _ = wait_for("network off the dead DHCP agent", dhcp_moved, 60, 0.5)
            say(f"DHCP: private network {victim} -> {hs} after {time.monotonic() - t_fail:.1f} s")
    else:
        time.sleep(args.agent_down_time * 3)
        check(
            l3_hosts(net, router) == [victim],
            "without automatic failover the router stays on the dead agent",
        )
        say(
            f"no failover: router1 still on dead {victim} "
            f"{time.monotonic() - t_fail:.1f} s after failure (as expected)"
        )

    # -- recovery ---------------------------------------------------------------------
    t_rec = time.monotonic()
    control(info, f"/hosts/{victim}/recover", {})
    wait_for("victim alive again", lambda: all(a.is_alive for a in net.agents(host=victim)), 30)
    say(f"{victim} agents alive again after {time.monotonic() - t_rec:.1f} s")
    say(f"control info: {control(info, '/info')['heartbeats']}")
    say("SMOKE OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
