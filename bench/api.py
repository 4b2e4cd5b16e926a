"""The REST API's cost at scale: building and serializing ``GET /v1/hosts`` and
``GET /v1/status`` for 1,000 and 10,000 hosts (what the dashboard asks every 2 s).

Measured on the API's own code path (api/views.py over an engine view, then pydantic's JSON),
in-process: the HTTP hop adds uvicorn's per-request cost, which does not grow with the hosts.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from hastack.api import views
from hastack.domain.hosts import HostRecord, HostState, Reading, Signal
from hastack.domain.instances import RecoveryPolicy
from hastack.engine.engine import EngineView
from hastack.policy import recovery
from hastack.policy.detection import PROFILES
from hastack.policy.guards import GuardPolicy
from hastack.ports.store import Lease


def _view(hosts: int) -> EngineView:
    now = time.time()
    names = [f"compute{i:05d}" for i in range(hosts)]
    records = {n: HostRecord(n, HostState.OK, now - 3600, "all signals healthy") for n in names}
    readings = {
        n: {
            Signal.NOVA: Reading(Signal.NOVA, False, now, "heartbeat fresh"),
            Signal.PROBE: Reading(Signal.PROBE, False, now, "reachable"),
        }
        for n in names
    }
    segment = recovery.Segment("default", RecoveryPolicy(shared_storage=True))
    settings = recovery.Settings(
        profile=PROFILES["default"],
        guards=GuardPolicy(),
        fence_levels={n: ((f"ipmi 10.0.{i // 250}.{i % 250}:623",),) for i, n in enumerate(names)},
        segments=dict.fromkeys(names, segment),
    )
    return EngineView(now, True, f"{hosts} ok", records, (), settings, None, 7, readings)


def _time(call: Any, repeat: int) -> tuple[float, Any]:
    out, samples = None, []
    for _ in range(repeat):
        start = time.perf_counter()
        out = call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), out


def run() -> list[dict[str, Any]]:
    rows = []
    lease = Lease("hastack-leader", "ctl-1", 7, time.time() + 10)
    for hosts in (1_000, 10_000):
        view = _view(hosts)
        repeat = 5 if hosts > 1_000 else 20
        took, body = _time(lambda v=view: views.hosts(v, None).model_dump_json(), repeat)
        status, _ = _time(
            lambda v=view: views.status(v, "ctl-1", lease, "default", False).model_dump_json(),
            repeat,
        )
        rows.append(
            {
                "hosts": hosts,
                "GET /v1/hosts ms": round(took * 1000, 1),
                "body kB": round(len(body) / 1024),
                "GET /v1/status ms": round(status * 1000, 1),
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
