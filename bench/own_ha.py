"""hastack's own HA, measured with real processes on a local 3-member etcd cluster.

1. **store**: a compare-and-set put on etcd (mean of 200, one client), and how long writes
   stall when etcd's raft leader is killed.
2. **takeover**: three ``hastack serve`` controllers (lease 3 s, tick 0.5 s) against
   ``hastack sim serve``; the leader is SIGKILLed, three times in a row (the killed one is
   started again, as systemd would, and rejoins as a follower): seconds from the kill until
   another controller holds the lease.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from hastack.clock import SystemClock
from hastack.drivers.store.etcd import EtcdStore
from hastack.engine.engine import LEADER
from hastack.errors import HastackError, StoreUnavailable
from hastack.etcd_cluster import LocalEtcdCluster, etcd_binary
from hastack.sim.process import sim_process, stop_processes

LEASE_TTL, TICK, KILLS = 3.0, 0.5, 5


def _store_figures(cluster: LocalEtcdCluster) -> dict[str, Any]:
    store = EtcdStore(cluster.endpoints, SystemClock(), timeout=1.0)
    try:
        start = time.perf_counter()
        for n in range(200):
            store.put(f"/bench/{n}", "x", expect=0)
        cas_ms = (time.perf_counter() - start) / 200 * 1000
        leader = cluster.leader()
        assert leader is not None
        cluster.kill(leader)
        killed = time.monotonic()
        while True:
            try:
                store.put("/bench/after", "x")
                break
            except StoreUnavailable:
                time.sleep(0.02)
        stall = time.monotonic() - killed
        cluster.restart(leader)
    finally:
        store.close()
    return {"cas_put_ms": round(cas_ms, 2), "write_stall_after_raft_leader_kill_s": round(stall, 2)}


def _controller(workdir: Path, simdir: Path, cluster: LocalEtcdCluster, name: str) -> Any:
    raw = yaml.safe_load((simdir / "hastack.yaml").read_text())
    raw["controller"] = {"name": name, "tick": TICK, "lease_ttl": LEASE_TTL}
    raw["store"] = {"driver": "etcd", "endpoints": cluster.endpoints, "timeout": 1.0}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    path.chmod(0o600)
    log = (workdir / f"{name}.log").open("ab")
    cmd = [sys.executable, "-m", "hastack", "serve", "--config", str(path)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def _holder(store: EtcdStore) -> tuple[str, int] | None:
    with contextlib.suppress(HastackError):
        lease = store.current(LEADER)
        return (lease.holder, lease.epoch) if lease else None
    return None


def _takeovers(workdir: Path, cluster: LocalEtcdCluster) -> list[float]:
    args = ["--hosts", "10", "--instances", "20", "--network-nodes", "0", "--seed", "2"]
    out: list[float] = []
    with sim_process(workdir / "sim", args) as sim:
        store = EtcdStore(cluster.endpoints, SystemClock(), timeout=1.0)
        procs = {
            f"ctl-{n}": _controller(workdir, sim.workdir, cluster, f"ctl-{n}") for n in (1, 2, 3)
        }
        try:
            for _ in range(KILLS):
                deadline = time.monotonic() + 30
                while (held := _holder(store)) is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if held is None:
                    break
                time.sleep(2 * TICK)  # a steady leader for a moment
                procs[held[0]].send_signal(signal.SIGKILL)
                killed = time.monotonic()
                while time.monotonic() - killed < 30:
                    now = _holder(store)
                    if now is not None and now[0] != held[0]:
                        out.append(round(time.monotonic() - killed, 2))
                        break
                    time.sleep(0.05)
                procs[held[0]].wait(10)
                procs[held[0]] = _controller(workdir, sim.workdir, cluster, held[0])
        finally:
            stop_processes(procs.values())
            store.close()
    return out


def run() -> dict[str, Any]:
    if etcd_binary() is None:
        return {"error": "etcd is not installed (apt-get install etcd-server)"}
    with tempfile.TemporaryDirectory(prefix="bench-own-ha-") as tmp:
        workdir = Path(tmp)
        with LocalEtcdCluster(workdir / "etcd") as cluster:
            figures = _store_figures(cluster)
            takeovers = _takeovers(workdir, cluster)
    figures.update(
        {
            "lease_ttl_s": LEASE_TTL,
            "tick_s": TICK,
            "takeovers_s": " ".join(f"{t:g}" for t in takeovers),
            "takeover_median_s": round(statistics.median(takeovers), 2) if takeovers else None,
            "takeover_max_s": max(takeovers) if takeovers else None,
        }
    )
    return figures


def targets(figures: dict[str, Any]) -> dict[str, str]:
    limit = LEASE_TTL + TICK
    worst = figures.get("takeover_max_s")
    if worst is None:
        return {f"SIGKILLed leader replaced within lease TTL + one tick ({limit:g} s)": "not run"}
    verdict = "met" if worst <= limit else "NOT met"
    return {
        f"SIGKILLed leader replaced within lease TTL + one tick ({limit:g} s)": (
            f"{verdict} (worst {worst})"
        )
    }
