"""The node agents' heartbeat path: 10,000 agents against one controller, and the transports.

1. **scale**: one controller process (the real :class:`AgentListener`, a tick of 0.5 s that
   reads every host's AGENT signal as the engine does) and a fleet of simulated agents in this
   process (:class:`hastack.sim.agents.AgentFleet`, the real signed datagrams, one beat a
   second each).  After a warm-up, one agent goes silent; the controller notes when its signal
   is lost.  Run with 10 agents, then with 10,000: detection latency (last heartbeat sent ->
   signal lost) must not change, no live agent may be judged lost, and the controller's CPU is
   reported.
2. **transports**: the controller-side CPU per heartbeat of three ways to carry it: a signed
   UDP datagram (from 1), an HTTP request on a kept-alive connection (Python's threading HTTP
   server, as a controller would run one), and an etcd lease keep-alive through etcd's JSON
   gateway (etcd's CPU, one local member).  Times 10,000 agents at one beat a second, this is
   what each would cost.
"""

from __future__ import annotations

import contextlib
import http.server
import multiprocessing
import os
import statistics
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import requests

from hastack.agent.protocol import decode, encode
from hastack.clock import SystemClock
from hastack.drivers.signals.agents import AgentListener
from hastack.etcd_cluster import LocalEtcdCluster, etcd_binary
from hastack.policy.detection import PROFILES
from hastack.ports.signals import Leadership
from hastack.sim.agents import AgentFleet

KEY = b"bench-key-0123456789abcdef"
INTERVAL = 1.0
TICK = 0.5
WARMUP = 8.0
PROFILE = PROFILES["default"]  # agent_stale_after 6 s


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _controller(conn: Connection) -> None:
    """The child: a listener that leads, and the engine's per-tick read of every host."""
    listener = AgentListener(
        ("127.0.0.1", 0),
        KEY,
        SystemClock(),
        PROFILE,
        name="bench",
        leadership=lambda: Leadership(True, 1, 0.0),
    ).start()
    conn.send(listener.address)
    hosts, victim, duration = conn.recv()
    cpu0, start = time.process_time(), time.time()
    lost_at, false_losses, reads = None, set(), []
    while time.time() - start < duration:
        now = time.time()
        t = time.perf_counter()
        readings = listener.read(hosts, now)
        reads.append(time.perf_counter() - t)
        for host, reading in readings.items():
            if reading.lost:
                if host == victim:
                    lost_at = lost_at or now
                else:
                    false_losses.add(host)
        time.sleep(TICK)
    stats = listener.stats
    conn.send(
        {
            "cpu_s": time.process_time() - cpu0,
            "wall_s": time.time() - start,
            "lost_at": lost_at,
            "false_losses": len(false_losses),
            "received": stats.received,
            "accepted": stats.accepted,
            "read_ms": statistics.median(reads) * 1000,
        }
    )
    listener.close()


def _scale(agents: int) -> dict[str, Any]:
    hosts = [f"compute{n:05d}" for n in range(agents)]
    victim = hosts[len(hosts) // 2]
    silenced = threading.Event()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_controller, args=(child,))
    proc.start()
    address = parent.recv()
    duration = WARMUP + PROFILE.agent_stale_after + 4.0
    fleet = AgentFleet(
        hosts,
        [address],
        KEY,
        interval=INTERVAL,
        alive=lambda h: not (h == victim and silenced.is_set()),
        verify=False,
    )
    parent.send((hosts, victim, duration))
    with fleet:
        time.sleep(WARMUP)
        silenced.set()
        time.sleep(0.05)
        last = fleet.last_sent[victim]
        result = parent.recv()
    proc.join(10)
    sent = fleet.stats.sent
    rtts = sorted(fleet.stats.rtts) or [float("nan")]
    lost_at = result["lost_at"]
    return {
        "agents": agents,
        "beats_per_s": round(sent / result["wall_s"]),
        "received_pct": round(100 * result["received"] / max(1, sent), 1),
        "ack_rtt_p50_ms": round(rtts[len(rtts) // 2] * 1000, 2),
        "ack_rtt_p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1000, 2),
        "controller_cpu_pct": round(100 * result["cpu_s"] / result["wall_s"], 1),
        "read_all_ms": round(result["read_ms"], 2),
        "detect_s": round(lost_at - last, 2) if lost_at else None,
        "false_losses": result["false_losses"],
    }


class _Beat(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = decode(KEY, body)
        reply = encode(KEY, {"t": "ack", "host": message["host"], "seq": message["seq"]})
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def _http_server(conn: Connection) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Beat)
    conn.send(server.server_address[1])
    server.serve_forever()


def _http_cost(seconds: float = 4.0) -> dict[str, Any]:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_http_server, args=(child,))
    proc.start()
    port = parent.recv()
    count = 0
    with requests.Session() as session:
        url = f"http://127.0.0.1:{port}/heartbeat"
        cpu0, start = _cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - start < seconds:
            message = {"t": "hb", "host": "h", "boot": "b", "seq": count, "ts": time.time()}
            session.post(url, data=encode(KEY, message), timeout=5).raise_for_status()
            count += 1
        cpu = _cpu_seconds(proc.pid) - cpu0
    proc.terminate()
    proc.join(5)
    return {"transport": "HTTP request (kept alive)", "cpu_us_per_beat": cpu / count * 1e6}


def _etcd_cost(seconds: float = 4.0) -> dict[str, Any] | None:
    if etcd_binary() is None:
        return None
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp, LocalEtcdCluster(Path(tmp), size=1) as cluster:
        member = cluster.members[0]
        assert member.proc is not None
        base = cluster.endpoints[0]
        count = 0
        with requests.Session() as session:
            grant = session.post(f"{base}/v3/lease/grant", json={"TTL": 10}, timeout=5).json()
            lease = {"ID": grant["ID"]}
            cpu0, start = _cpu_seconds(member.proc.pid), time.monotonic()
            while time.monotonic() - start < seconds:
                session.post(f"{base}/v3/lease/keepalive", json=lease, timeout=5).raise_for_status()
                count += 1
            cpu = _cpu_seconds(member.proc.pid) - cpu0
    return {
        "transport": "etcd lease keep-alive (JSON gateway)",
        "cpu_us_per_beat": cpu / count * 1e6,
    }


def run() -> dict[str, Any]:
    small, large = _scale(10), _scale(10_000)
    udp_cost = large["controller_cpu_pct"] / 100 / max(1, large["beats_per_s"]) * 1e6
    transports = [{"transport": "UDP datagram, signed (chosen)", "cpu_us_per_beat": udp_cost}]
    transports.append(_http_cost())
    with contextlib.suppress(OSError):
        etcd = _etcd_cost()
        if etcd is not None:
            transports.append(etcd)
    for t in transports:
        t["cores_for_10k_per_s"] = round(t["cpu_us_per_beat"] * 10_000 / 1e6, 2)
        t["cpu_us_per_beat"] = round(t["cpu_us_per_beat"], 1)
    return {"scale": [small, large], "transports": transports}


def targets(result: dict[str, Any]) -> dict[str, str]:
    small, large = result["scale"]
    same = (
        small["detect_s"] is not None
        and large["detect_s"] is not None
        and abs(large["detect_s"] - small["detect_s"]) <= TICK
        and large["false_losses"] == 0
    )
    return {
        "10,000 agents, detection latency unchanged": (
            f"{'met' if same else 'NOT met'}: {small['detect_s']} s with 10 agents, "
            f"{large['detect_s']} s with 10,000 (stale after {PROFILE.agent_stale_after:g} s, "
            f"tick {TICK:g} s), {large['false_losses']} false losses, controller CPU "
            f"{large['controller_cpu_pct']}%"
        )
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
