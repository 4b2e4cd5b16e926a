"""Instance HA, measured end to end over the HTTP simulator.

The simulator runs in its own process (``hastack sim serve``: Nova, Placement, Glance over
HTTP, a real IPMI BMC and a TCP probe port per host); the controller runs in this process with
the production wiring (``build_controller``: openstacksdk, pyghmi, sqlite journal).

1. **recovery**: 100 VMs on one host, power loss; seconds from the failure to declared failed,
   fenced, first evacuation issued, first and last VM ACTIVE — for both detection profiles.
2. **overhead**: 500 VMs on one host; the controller's own time from fence confirmed to every
   evacuation issued (Nova accepted it).
3. **scale**: 10,000 hosts and 100,000 VMs, nothing failing; the controller's CPU per second of
   wall time in steady state (Nova heartbeats every tick; probes and BMCs are off at this size,
   as the simulator serves them only up to 2,000 hosts; the probe cost is measured separately).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from hastack.config import load_config
from hastack.controller import build_controller
from hastack.sim.process import boot_servers, sim_process
from hastack.timeline import of_all

log = logging.getLogger(__name__)


def _config(workdir: Path, profile: str, **recovery: Any) -> Any:
    raw = yaml.safe_load((workdir / "hastack.yaml").read_text())
    raw["profile"] = profile
    raw["controller"] = {"name": "bench", "tick": 1.0}
    raw["store"] = {"driver": "sqlite", "path": str(workdir / f"bench-{profile}.db")}
    raw["segments"] = [
        {"name": "all", "hosts": ["*"], "recovery": {"protect": "all", "shared_storage": True}}
    ]
    raw["recovery"] = {"max_parallel": 1000, **recovery}
    path = workdir / f"hastack-{profile}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _control(workdir: Path, host: str, mode: str) -> float:
    state = yaml.safe_load((workdir / "hastack-sim.json").read_text())
    at = time.time()
    r = requests.post(f"{state['control_url']}/hosts/{host}/fail", json={"mode": mode}, timeout=10)
    r.raise_for_status()
    return at


def _recover(workdir: Path, profile: str, vms: int, host: str = "compute01") -> dict[str, Any]:
    args = ["--hosts", "30", "--instances", "0", "--seed", "3", "--evacuate-seconds", "3"]
    args += ["--host-vcpus", "160", "--host-memory-mb", "393216"]
    with sim_process(workdir, args):
        boot_servers(workdir, host, vms, prefix="bench")
        config = _config(workdir, profile)
        controller = build_controller(config)
        engine = controller.engine
        thread = threading.Thread(target=engine.run_forever, daemon=True)
        thread.start()
        try:
            time.sleep(4)  # a few healthy ticks first
            failed_at = _control(workdir, host, "power")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                record = engine.records.get(host)
                if record is not None and record.state.value == "recovered":
                    break
                time.sleep(0.2)
        finally:
            engine.stop()
            thread.join(30)
            ops = [op for op, _ in engine.journal.operations()]
            controller.close()
    tl = of_all(ops).get(host)
    if tl is None:
        return {"profile": profile, "vms": vms, "error": "never declared failed"}
    rel = tl.relative(failed_at)
    overhead = None
    if tl.fenced is not None and tl.first_issued is not None:
        last_issued = max(
            float(s.params["issued_at"]) for op in ops for s in op.steps if "issued_at" in s.params
        )
        overhead = round(last_issued - tl.fenced, 3)
    return {
        "profile": profile,
        "vms": vms,
        "declared_s": rel["declared"],
        "fenced_s": rel["fenced"],
        "first_evacuate_s": rel["first_evacuate_issued"],
        "first_active_s": rel["first_active"],
        "all_active_s": rel["all_active"],
        "recovered": f"{tl.recovered}/{tl.evacuations}",
        "fenced_to_all_issued_s": overhead,
    }


def _steady_cpu(workdir: Path, seconds: float = 30.0) -> dict[str, Any]:
    args = ["--hosts", "10000", "--instances", "100000", "--seed", "5"]
    with sim_process(workdir, args, timeout=180):
        config = _config(workdir, "default")
        controller = build_controller(config)
        engine = controller.engine
        ticks: list[float] = []
        engine.listeners.append(lambda report: ticks.append(report.elapsed))
        thread = threading.Thread(target=engine.run_forever, daemon=True)
        thread.start()
        try:
            time.sleep(10)  # warm-up: first ticks, connections, caches
            cpu0, wall0, n0 = time.process_time(), time.monotonic(), len(ticks)
            time.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            window = ticks[n0:]
            verdict = engine.last_verdict
        finally:
            engine.stop()
            thread.join(30)
            controller.close()
    if not window:
        return {"hosts": 10000, "vms": 100000, "error": f"no tick completed: {verdict}"}
    return {
        "hosts": 10000,
        "vms": 100000,
        "cpu_per_wall": round(cpu / wall, 3),
        "ticks": len(window),
        "tick_median_ms": round(sorted(window)[len(window) // 2] * 1000, 1) if window else None,
        "tick_max_ms": round(max(window) * 1000, 1) if window else None,
        "verdict": verdict,
    }


def run() -> dict[str, Any]:
    logging.getLogger("hastack").setLevel(logging.WARNING)
    out: dict[str, Any] = {"recovery": [], "targets": {}}
    for profile in ("default", "fast"):
        with tempfile.TemporaryDirectory(prefix=f"bench-ha-{profile}-") as tmp:
            out["recovery"].append(_recover(Path(tmp), profile, 100))
    with tempfile.TemporaryDirectory(prefix="bench-ha-500-") as tmp:
        out["overhead_500"] = _recover(Path(tmp), "fast", 500)
    with tempfile.TemporaryDirectory(prefix="bench-ha-10k-") as tmp:
        out["steady_10k"] = _steady_cpu(Path(tmp))
    by = {r["profile"]: r for r in out["recovery"]}
    out["targets"] = {
        "default: failure to first evacuate <= 15 s": _met(
            by["default"].get("first_evacuate_s"), 15
        ),
        "fast: failure to first evacuate <= 5 s": _met(by["fast"].get("first_evacuate_s"), 5),
        "500 VMs: fence confirmed to all issued <= 1 s": _met(
            out["overhead_500"].get("fenced_to_all_issued_s"), 1
        ),
        "10k hosts / 100k VMs: < 1/3 core": _met(out["steady_10k"].get("cpu_per_wall"), 1 / 3),
    }
    return out


def _met(value: float | None, limit: float) -> str:
    if value is None:
        return "not measured"
    return f"{'met' if value <= limit else 'NOT met'} ({value})"
