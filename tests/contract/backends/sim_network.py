"""The simulator's Neutron face as a contract-suite backend: ``hastack sim serve`` with network
nodes only (no routers or networks seeded besides ``public``), with Neutron's agent timing
shortened to the same values the real-Neutron oracle runs with."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

from hastack.sim.process import sim_process

from .base import Control, NetworkCloudUnderTest

AGENT_DOWN_TIME = 6
REPORT_INTERVAL = 2


def unavailable() -> str | None:
    return None


@contextlib.contextmanager
def start(tmp_path: pathlib.Path, hosts: int) -> Iterator[NetworkCloudUnderTest]:
    args = [
        "--hosts", "1", "--instances", "0", "--seed", "7", "--bmc", "off",
        "--network-nodes", str(hosts), "--routers", "0", "--networks", "0",
        "--agent-down-time", str(AGENT_DOWN_TIME),
        "--agent-report-interval", str(REPORT_INTERVAL),
        "--host-boot-seconds", "0.5",
    ]  # fmt: skip
    with sim_process(tmp_path, args) as sim:
        yield NetworkCloudUnderTest(
            backend="sim_network",
            clouds_yaml=pathlib.Path(sim.state["clouds_yaml"]),
            cloud_name="hastack-sim",
            control=Control(sim.state["base_url"]),
            hosts=[f"network{i:02d}" for i in range(1, hosts + 1)],
            agent_down_time=AGENT_DOWN_TIME,
        )
