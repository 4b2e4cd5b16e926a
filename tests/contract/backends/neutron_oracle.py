"""The real-Neutron oracle backend: OpenStack Neutron 29 (API, ML2 + L3 plugins, agent
schedulers) in one local process, with fake agents heartbeating through Neutron's agent RPC.

``tests/oracle/neutron_server.py`` runs with the interpreter of ``.venv-neutron-oracle`` (made by
``scripts/oracle-venv.sh neutron``); this module starts it like :mod:`.nova_oracle` starts Nova:
it waits for the one-line JSON ready message and stops it again, and the child exits by itself
when its stdin closes or after ``MAX_LIFETIME`` seconds.  Neutron's automatic rescheduling off
dead agents is off, so a failed node's routers stay where the tests put them.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

from .base import Control, NetworkCloudUnderTest
from .nova_oracle import run_oracle

REPO = pathlib.Path(__file__).resolve().parents[3]
VENV = pathlib.Path(os.environ.get("NEUTRON_ORACLE_VENV", REPO / ".venv-neutron-oracle"))
PYTHON = VENV / "bin" / "python"
SERVER = REPO / "tests" / "oracle" / "neutron_server.py"
STAMP = VENV / ".hastack-neutron-oracle-stamp"

AGENT_DOWN_TIME = 6
REPORT_INTERVAL = 2
START_TIMEOUT = 180.0
MAX_LIFETIME = 3600.0


def unavailable() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    if not PYTHON.exists():
        return f"{VENV} is missing (run scripts/oracle-venv.sh neutron)"
    if not STAMP.exists():
        return f"{VENV} is incomplete (run scripts/oracle-venv.sh neutron)"
    return None


@contextlib.contextmanager
def start(tmp_path: pathlib.Path, hosts: int) -> Iterator[NetworkCloudUnderTest]:
    """Run a real-Neutron cloud with ``hosts`` network nodes until the block exits."""
    workdir = tmp_path / "neutron-oracle"
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(PYTHON), str(SERVER), "--hosts", str(hosts), "--workdir", str(workdir),
        "--agent-down-time", str(AGENT_DOWN_TIME), "--report-interval", str(REPORT_INTERVAL),
        "--auto-failover", "off",
    ]  # fmt: skip
    with run_oracle(cmd, workdir, "neutron", START_TIMEOUT, MAX_LIFETIME) as ready:
        yield NetworkCloudUnderTest(
            backend="neutron_oracle",
            clouds_yaml=pathlib.Path(str(ready["clouds_yaml"])),
            cloud_name=str(ready["cloud"]),
            control=Control(url=str(ready["control_url"])),
            hosts=[str(h) for h in ready["hosts"]],  # type: ignore[union-attr]
            agent_down_time=int(ready["agent_down_time"]),  # type: ignore[call-overload]
        )
