"""The simulator as a contract-suite backend: ``hastack sim serve`` run as a real process, exactly
as an operator starts it, with Nova-like timing shortened so the suite stays fast."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

from hastack.sim.process import sim_process

from .base import CloudUnderTest, Control

SERVICE_DOWN_TIME = 4


def unavailable() -> str | None:
    return None


@contextlib.contextmanager
def start(tmp_path: pathlib.Path, hosts: int) -> Iterator[CloudUnderTest]:
    args = [
        "--hosts", str(hosts), "--instances", "0", "--seed", "7", "--bmc", "off",
        "--report-interval", "1", "--service-down-time", str(SERVICE_DOWN_TIME),
        "--evacuate-seconds", "1", "--host-boot-seconds", "0.5", "--rpc-response-timeout", "2",
    ]  # fmt: skip
    with sim_process(tmp_path, args) as sim:
        yield CloudUnderTest(
            backend="sim",
            clouds_yaml=pathlib.Path(sim.state["clouds_yaml"]),
            cloud_name="hastack-sim",
            control=Control(sim.state["base_url"]),
            hosts=[f"compute{i:02d}" for i in range(1, hosts + 1)],
            service_down_time=SERVICE_DOWN_TIME,
        )
