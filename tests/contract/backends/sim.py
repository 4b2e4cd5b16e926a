"""The simulator as a contract-suite backend: ``hastack sim serve`` run as a real process, exactly
as an operator starts it, with Nova-like timing shortened so the suite stays fast."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

from .base import CloudUnderTest, Control

SERVICE_DOWN_TIME = 4


def unavailable() -> str | None:
    return None


@contextlib.contextmanager
def start(tmp_path: pathlib.Path, hosts: int) -> Iterator[CloudUnderTest]:
    cmd = [
        sys.executable,
        "-m",
        "hastack",
        "sim",
        "serve",
        "--hosts",
        str(hosts),
        "--instances",
        "0",
        "--seed",
        "7",
        "--workdir",
        str(tmp_path),
        "--bmc",
        "off",
        "--report-interval",
        "1",
        "--service-down-time",
        str(SERVICE_DOWN_TIME),
        "--evacuate-seconds",
        "1",
        "--host-boot-seconds",
        "0.5",
    ]
    log = open(tmp_path / "sim.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    state_file = tmp_path / "hastack-sim.json"
    try:
        deadline = time.monotonic() + 30
        while not state_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"hastack sim serve did not start: {(tmp_path / 'sim.log').read_text()}"
                )
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
        base = state["base_url"]
        yield CloudUnderTest(
            backend="sim",
            clouds_yaml=pathlib.Path(state["clouds_yaml"]),
            cloud_name="hastack-sim",
            control=Control(base),
            hosts=[f"compute{i:02d}" for i in range(1, hosts + 1)],
            service_down_time=SERVICE_DOWN_TIME,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.environ.pop("HASTACK_SIM_URL", None)
