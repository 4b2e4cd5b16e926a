"""Run ``hastack sim serve`` as a separate process, the way an operator runs it.

Tests, benchmarks and ``hastack demo --ha`` use this so they exercise the real command line and
keep the simulator's CPU off their own interpreter; also here: booting servers on one host of
such a simulator through Nova, and stopping the processes they started.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hastack.sim.files import STATE_FILE


@dataclass
class SimProcess:
    proc: subprocess.Popen[bytes]
    workdir: Path
    state: dict[str, Any]  # the contents of hastack-sim.json
    startup_seconds: float

    @property
    def log(self) -> Path:
        return self.workdir / "serve.log"


@contextlib.contextmanager
def sim_process(workdir: Path, args: Sequence[str], timeout: float = 60) -> Iterator[SimProcess]:
    """Start ``hastack sim serve ARGS --workdir WORKDIR``; yield once its files are written;
    stop it on exit.  Its output goes to ``WORKDIR/serve.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    state_file = workdir / STATE_FILE
    state_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "hastack", "sim", "serve", "--workdir", str(workdir), *args]
    started = time.perf_counter()
    with (workdir / "serve.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            while not state_file.exists():
                if proc.poll() is not None or time.perf_counter() - started > timeout:
                    tail = (workdir / "serve.log").read_text()[-2000:]
                    raise RuntimeError(f"hastack sim serve did not start:\n{tail}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            yield SimProcess(proc, workdir, json.loads(state_file.read_text()), elapsed)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGTERM every process (a stopped one is continued first), then wait; SIGKILL what has
    not exited after ``timeout`` seconds."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def boot_servers(
    workdir: Path, host: str, count: int, *, prefix: str = "vm", timeout: float = 120
) -> None:
    """Boot ``count`` one-vCPU servers on ``host`` through Nova (admin, forced host) of the
    simulator whose files are in ``workdir``; return once all are ACTIVE, else TimeoutError."""
    from hastack.drivers.openstack.connection import connect  # noqa: PLC0415 (openstacksdk)

    conn = connect(workdir / "clouds.yaml", "hastack-sim")
    try:
        flavor = next(f for f in conn.compute.flavors() if f.vcpus == 1)
        image = next(iter(conn.image.images()))
        for n in range(count):
            server = {
                "name": f"{prefix}-{n:04d}",
                "flavorRef": flavor.id,
                "imageRef": image.id,
                "networks": "none",
                "availability_zone": f"nova:{host}",
            }
            conn.compute.post("/servers", json={"server": server}, microversion="2.37")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            servers = list(conn.compute.servers(all_projects=True, compute_host=host))
            if len(servers) >= count and all(s.status == "ACTIVE" for s in servers):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{count} servers not ACTIVE on {host} within {timeout:g}s")
    finally:
        conn.close()
