"""Network HA, measured end to end: over the HTTP simulator, and side by side with real Neutron.

1. **sim**: ``hastack sim serve`` with 21 network nodes, 1,000 legacy routers and 500 networks.
   Before the failure every router is moved onto network01's L3 agent, and every network gets
   network01's DHCP agent as one of its two, through the Neutron API.  The controller runs in
   this process with the production wiring (``build_controller``: openstacksdk, pyghmi, TCP
   probes, sqlite journal).  network01 loses power; the figures are seconds from the failure
   to: the node declared failed, fenced, the L3 agent's recovery opened, the first and the last
   router verified by hastack (ports ACTIVE on the new host, floating IPs ACTIVE), the last DHCP
   network restored.  Afterwards an independent read of Neutron checks every router (bound to
   one live agent, its ports ACTIVE there, its floating IPs ACTIVE) and the spread of routers
   over the 20 live agents.
2. **oracle**: real Neutron 29 (``tests/oracle/neutron_server.py``, fake agents heartbeating
   through Neutron's RPC, the fake L3 agent binding and activating router ports) with a few
   dozen routers on network01, same ``agent_down_time``, run twice: once with Neutron's own
   ``allow_automatic_l3agent_failover``, once with hastack and Neutron's failover off.  The
   oracle has no BMCs and no Nova, so hastack runs there with an empty in-process Nova (the
   simulator's, zero hosts: nothing for instance HA to do) and proves nothing off: it moves
   routers as an agent-only failure under ``unfenced_moves``, with ``agent_grace`` and
   ``unfenced_grace`` of 2 x ``agent_down_time`` (the silence Neutron's own failover waits for)
   -- the policy a site without fence devices would choose -- 4 moves at a time.  The same
   poller measures both: seconds from the failure until every router is bound to a live agent
   with its ports ACTIVE on that agent's host.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml

from hastack.clock import SystemClock
from hastack.config import load_config
from hastack.controller import build_controller
from hastack.domain.network import AgentInfo, AgentKind
from hastack.drivers.openstack.connection import connect
from hastack.drivers.openstack.network import NeutronNetwork
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.devices import FenceTopology
from hastack.engine.engine import Engine, EngineOptions
from hastack.engine.journal import Operation, StepState
from hastack.policy import netrecovery, recovery
from hastack.sim.drivers import SimCompute
from hastack.sim.process import sim_process
from hastack.sim.world import World

log = logging.getLogger(__name__)

REPO = pathlib.Path(__file__).resolve().parents[1]
ROUTERS, NETWORKS, NODES = 1000, 500, 21
ORACLE_ROUTERS, ORACLE_NODES, ORACLE_DOWN_TIME = 24, 4, 6
# hastack on the oracle trusts the same evidence as Neutron's failover (2 x agent_down_time of
# silence), and moves 4 routers at a time: the oracle is one process on sqlite, and 24 moves at
# once starve its agents' heartbeats (healthy agents then look dead: measured, not guessed).
ORACLE_GRACE, ORACLE_PARALLEL = 2 * ORACLE_DOWN_TIME, 4


# ---------------------------------------------------------------- shared helpers


def _parallel(fn: Callable[[Any], None], items: Sequence[Any], workers: int = 8) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, items))


def _agent(net: NeutronNetwork, host: str, kind: AgentKind) -> AgentInfo:
    return next(a for a in net.agents() if a.host == host and a.kind == kind)


def _concentrate_routers(net: NeutronNetwork, target: AgentInfo) -> list[str]:
    """Move every router onto ``target`` through the scheduler API; the router ids."""
    routers = net.routers()

    def move(r: Any) -> None:
        for agent in r.agents:
            if agent != target.id:
                net.remove_router(agent, r.id)
        net.add_router(target.id, r.id)

    _parallel(move, [r for r in routers if tuple(r.agents) != (target.id,)])
    return [r.id for r in routers]


def _healthy(net: NeutronNetwork, routers: list[str], dead_host: str) -> tuple[int, list[int]]:
    """How many of ``routers`` are fine off ``dead_host`` (bound to one live agent, ports ACTIVE
    on its host, floating IPs ACTIVE), and the live L3 agents' router counts."""
    agents = {a.id: a for a in net.agents()}
    rows = {r.id: r for r in net.routers()}
    health = net.router_health(routers)
    ok = 0
    for rid in routers:
        bound = [agents[a] for a in rows[rid].agents if a in agents]
        if len(bound) != 1 or not bound[0].alive or bound[0].host == dead_host:
            continue
        h = health.get(rid)
        if h is None or not h.ports:
            continue
        ports = all(p.status == "ACTIVE" and p.host == bound[0].host for p in h.ports)
        if ports and all(status == "ACTIVE" for _, status in h.floating_ips):
            ok += 1
    load = {
        a.id: 0
        for a in agents.values()
        if a.kind == AgentKind.L3 and a.alive and a.host != dead_host
    }
    for r in rows.values():
        for a in r.agents:
            if a in load:
                load[a] += 1
    return ok, sorted(load.values())


def _wait(pred: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def _fail(control_url: str, host: str, mode: str = "power") -> float:
    at = time.time()
    r = requests.post(f"{control_url}/hosts/{host}/fail", json={"mode": mode}, timeout=10)
    r.raise_for_status()
    return at


@contextlib.contextmanager
def _running(engine: Engine) -> Iterator[Engine]:
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(60)


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 2)


def _step_times(ops: Sequence[Operation], kind: str) -> list[float]:
    return sorted(
        s.updated
        for op in ops
        if op.kind == netrecovery.RECOVER_AGENT
        for s in op.steps
        if s.kind == kind and s.state == StepState.DONE
    )


# ---------------------------------------------------------------- 1. the HTTP simulator


def _sim_config(workdir: Path) -> Any:
    raw = yaml.safe_load((workdir / "hastack.yaml").read_text())
    raw["profile"] = "default"
    raw["controller"] = {"name": "bench", "tick": 1.0}
    raw["store"] = {"driver": "sqlite", "path": str(workdir / "bench-net.db")}
    raw["segments"] = [{"name": "all", "hosts": ["*"], "recovery": {"protect": "all"}}]
    path = workdir / "hastack-bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _prepare_sim(net: NeutronNetwork) -> list[str]:
    """Every router on network01's L3 agent, network01's DHCP agent on every network."""
    l3 = _agent(net, "network01", AgentKind.L3)
    dhcp = _agent(net, "network01", AgentKind.DHCP)
    routers = _concentrate_routers(net, l3)

    def give(n: Any) -> None:
        if dhcp.id in n.agents:
            return
        if n.agents:
            net.remove_network(n.agents[0], n.id)
        net.add_network(dhcp.id, n.id)

    networks = net.networks()
    _parallel(give, networks)
    settled = _wait(
        lambda: _healthy_on(net, routers, "network01") == len(routers), timeout=120, every=1
    )
    if not settled:
        raise RuntimeError("the routers did not settle on network01 before the failure")
    return routers


def _dhcp_restored(net: NeutronNetwork, dead_host: str, per_network: int) -> tuple[int, int]:
    """How many networks have ``per_network`` live DHCP agents, none on ``dead_host``."""
    live = {a.id for a in net.agents() if a.alive and a.host != dead_host}
    networks = net.networks()
    ok = sum(1 for n in networks if len(n.agents) == per_network and set(n.agents) <= live)
    return ok, len(networks)


def _healthy_on(net: NeutronNetwork, routers: list[str], host: str) -> int:
    health = net.router_health(routers)
    return sum(
        1
        for h in health.values()
        if h.ports and all(p.status == "ACTIVE" and p.host == host for p in h.ports)
    )


def sim_run() -> dict[str, Any]:
    args = ["--hosts", "2", "--instances", "0", "--seed", "11", "--network-nodes", str(NODES)]
    args += ["--routers", str(ROUTERS), "--networks", str(NETWORKS)]
    with tempfile.TemporaryDirectory(prefix="bench-net-") as tmp:
        workdir = Path(tmp)
        with sim_process(workdir, args, timeout=120) as sim:
            config = _sim_config(workdir)
            net = NeutronNetwork(connect(config.cloud.clouds_yaml, config.cloud.name), timeout=60)
            prep = time.monotonic()
            routers = _prepare_sim(net)
            prep_s = round(time.monotonic() - prep, 1)
            l3 = _agent(net, "network01", AgentKind.L3)
            dhcp = _agent(net, "network01", AgentKind.DHCP)
            controller = build_controller(config)
            engine = controller.engine
            try:
                with _running(engine):
                    time.sleep(5)  # a few healthy ticks
                    failed_at = _fail(sim.state["control_url"], "network01")

                    def finished() -> bool:
                        ops = [op for op in engine.ops.values() if op.subject in (l3.id, dhcp.id)]
                        return len(ops) == 2 and all(op.state.value == "done" for op in ops)

                    done = _wait(finished, timeout=300)
                    ended = time.time()
                ops = [op for op, _ in engine.journal.operations()]
            finally:
                controller.close()
            ok, load = _healthy(net, routers, "network01")
            dhcp_ok, networks = _dhcp_restored(net, "network01", 2)
    host_op = next(op for op in ops if op.kind == recovery.RECOVER and op.subject == "network01")
    fence = host_op.step(recovery.FENCE)
    l3_op = next((op for op in ops if op.subject == l3.id), None)
    router_done = _step_times(ops, netrecovery.ROUTER)
    network_done = _step_times(ops, netrecovery.NETWORK)
    return {
        "routers": ROUTERS,
        "networks": networks,
        "live_l3_agents": len(load),
        "prepare_s": prep_s,
        "finished": done,
        "declared_s": _rel(host_op.created, failed_at),
        "fenced_s": _rel(
            fence.updated if fence and fence.state == StepState.DONE else None, failed_at
        ),
        "l3_recovery_opened_s": _rel(l3_op.created if l3_op else None, failed_at),
        "first_router_verified_s": _rel(router_done[0] if router_done else None, failed_at),
        "all_routers_verified_s": _rel(
            router_done[-1] if len(router_done) == ROUTERS else None, failed_at
        ),
        "routers_verified": len(router_done),
        "dhcp_moves": len(network_done),
        "last_dhcp_move_s": _rel(network_done[-1] if network_done else None, failed_at),
        "dhcp_check": f"{dhcp_ok}/{networks} networks on 2 live agents",
        "wall_s": round(ended - failed_at, 1),
        "independent_check": f"{ok}/{ROUTERS} routers healthy off network01",
        "spread": (load[-1] - load[0]) if load else None,
        "per_agent": f"{load[0]}..{load[-1]}" if load else "",
    }


# ---------------------------------------------------------------- 2. the real-Neutron oracle


def _oracle_unavailable() -> str | None:
    from tests.contract.backends import neutron_oracle  # noqa: PLC0415

    return neutron_oracle.unavailable()


@contextlib.contextmanager
def _oracle(workdir: Path, auto_failover: bool) -> Iterator[dict[str, Any]]:
    from tests.contract.backends import neutron_oracle  # noqa: PLC0415
    from tests.contract.backends.nova_oracle import run_oracle  # noqa: PLC0415

    cmd = [
        str(neutron_oracle.PYTHON), str(neutron_oracle.SERVER), "--hosts", str(ORACLE_NODES),
        "--workdir", str(workdir), "--agent-down-time", str(ORACLE_DOWN_TIME),
        "--report-interval", "2", "--auto-failover", "on" if auto_failover else "off",
    ]  # fmt: skip
    with run_oracle(cmd, workdir, "neutron", 180.0, 1800.0) as ready:
        yield ready


def _oracle_routers(conn: Any, count: int, host: str) -> None:
    """``count`` routers on ``host``'s L3 agent, each with one interface on a subnet of its own
    (the oracle's fake L3 agent binds and activates those ports).  Neutron's scheduler places
    them while the other L3 agents are disabled: moving them there afterwards would race the
    fake agents' port reports (an old host's "down" landing after the new host's "up")."""
    others = [a for a in conn.network.agents(agent_type="L3 agent") if a.host != host]
    for agent in others:
        conn.network.update_agent(agent, admin_state_up=False)
    net = conn.network.create_network(name="bench")
    for n in range(count):
        subnet = conn.network.create_subnet(
            network_id=net.id, ip_version=4, cidr=f"10.{n // 250}.{n % 250}.0/24", name=f"s{n}"
        )
        router = conn.network.create_router(name=f"bench-{n:02d}")
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    for agent in others:
        conn.network.update_agent(agent, admin_state_up=True)


def _hastack_engine(workdir: Path, conn: Any) -> Engine:
    """hastack on the oracle: the production engine and Neutron driver; Nova is the simulator's,
    in process and empty (the oracle has none)."""
    clock = SystemClock()
    config = load_config(_write(workdir / "hastack.yaml", {"cloud": {"name": "oracle"}}))
    world = World(clock)
    settings = recovery.Settings(
        profile=config.detection_profile(),
        guards=config.guard_policy(),
        fence_levels={},
        segments={},
        spare_hosts=frozenset(),
    )
    net_settings = netrecovery.NetSettings(
        stale_after=ORACLE_DOWN_TIME,
        agent_grace=ORACLE_GRACE,
        unfenced_moves=True,
        unfenced_grace=ORACLE_GRACE,
        max_parallel=ORACLE_PARALLEL,
    )
    return Engine(
        settings,
        SimCompute(world),
        [],
        FenceTopology({}),
        SqliteStore(str(workdir / "journal.db"), clock),
        clock,
        EngineOptions(name="bench", tick=1.0),
        network=NeutronNetwork(conn, timeout=60),
        net_settings=net_settings,
    )


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _oracle_side(mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-neutron-{mode}-") as tmp:
        workdir = Path(tmp)
        with _oracle(workdir, auto_failover=mode == "neutron") as ready:
            conn = connect(Path(str(ready["clouds_yaml"])), str(ready["cloud"]))
            _oracle_routers(conn, ORACLE_ROUTERS, "network01")
            net = NeutronNetwork(conn, timeout=60)
            routers = [r.id for r in net.routers()]
            if not _wait(lambda: _healthy_on(net, routers, "network01") == len(routers), 120):
                return {"peer": mode, "error": "routers never settled on network01"}
            engine = _hastack_engine(workdir, conn) if mode == "hastack" else None
            with contextlib.ExitStack() as stack:
                if engine is not None:
                    stack.enter_context(_running(engine))
                    stack.callback(engine.close)
                    time.sleep(4)
                failed_at = _fail(f"{ready['control_url']}/control", "network01")
                first: float | None = None
                everything: float | None = None
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline:
                    ok, load = _healthy(net, routers, "network01")
                    if ok and first is None:
                        first = time.time()
                    if ok == len(routers):
                        everything = time.time()
                        break
                    time.sleep(1.0)  # the poller's reads load the oracle too: same for both
            ok, load = _healthy(net, routers, "network01")
    return {
        "peer": "Neutron automatic failover" if mode == "neutron" else "hastack",
        "routers": len(routers),
        "agent_down_time": ORACLE_DOWN_TIME,
        "parallel": "1 (serial)" if mode == "neutron" else ORACLE_PARALLEL,
        "first_router_s": _rel(first, failed_at),
        "all_routers_s": _rel(everything, failed_at),
        "healthy_at_end": f"{ok}/{len(routers)}",
        "spread": (load[-1] - load[0]) if load else None,
    }


def oracle_run() -> list[dict[str, Any]]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    reason = _oracle_unavailable()
    if reason:
        return [{"peer": "real Neutron", "error": f"oracle unavailable: {reason}"}]
    return [_oracle_side("neutron"), _oracle_side("hastack")]


def run() -> dict[str, Any]:
    logging.getLogger("hastack").setLevel(logging.WARNING)
    sim = sim_run()
    oracle = oracle_run()
    return {
        "sim": sim,
        "oracle": oracle,
        "targets": {
            "1,000 routers off a dead agent, failure to all verified <= 30 s": _met(
                sim.get("all_routers_verified_s"), 30
            ),
            "spread over the live agents afterwards <= 1": _met(sim.get("spread"), 1),
            "500 networks' DHCP restored (failure to last move), no target": str(
                sim.get("last_dhcp_move_s")
            ),
        },
    }


def _met(value: float | None, limit: float) -> str:
    if value is None:
        return "not measured"
    return f"{'met' if value <= limit else 'NOT met'} ({value})"
