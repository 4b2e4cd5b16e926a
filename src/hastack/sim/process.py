"""Run ``hastack sim serve`` as a separate process, the way an operator runs it.

Tests and benchmarks use this so they exercise the real command line and keep the simulator's
CPU off their own interpreter.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
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
