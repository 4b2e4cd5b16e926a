"""``hastack serve`` as operators run it (a process): it prints its API and dashboard URLs,
and with ``--log-format json`` every log line is a JSON object, one verdict line per tick."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import requests

from tests.functional.harness import Harness, wait_for


def test_serve_prints_its_urls_and_logs_one_json_verdict_per_tick(
    cloud: Callable[..., Harness],
) -> None:
    h = cloud(hosts=3, instances=3)
    config = h.write_config()
    argv = [
        sys.executable,
        "-m",
        "hastack",
        "--log-format",
        "json",
        "serve",
        "--config",
        str(config),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # hastack controller NAME: cloud ..., store ...
        api = proc.stdout.readline().split()
        assert api[0] == "API" and api[-2] == "dashboard", api
        url = api[-1].rstrip("/")
        wait_for(lambda: _leading(url), 15, "the controller leads and its API answers")
        time.sleep(2.0)  # a few more ticks (tick: 0.5 s)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line JSON
    ticks = [x for x in lines if x["logger"] == "hastack.tick"]
    assert len(ticks) >= 4, lines[-5:]
    assert all(
        {"ts", "level", "controller", "leader", "verdict", "elapsed_ms"} <= set(t) for t in ticks
    )
    assert any(t["leader"] and t["verdict"] == "3 ok; network: no L3/DHCP agents" for t in ticks)


def _leading(url: str) -> bool:
    try:
        return bool(requests.get(url + "/healthz", timeout=2).json()["leading"])
    except requests.RequestException:
        return False
