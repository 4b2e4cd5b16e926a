"""The real-Nova oracle backend: OpenStack Nova 34 + Placement 16 in one local process.

``tests/oracle/nova_server.py`` runs with the interpreter of ``.venv-oracle`` (made by
``scripts/oracle-venv.sh nova``); this module starts it, waits for its one-line JSON ready
message and stops it again. The child also exits by itself when our end of its stdin
closes (the test runner died) or after ``MAX_LIFETIME`` seconds, so no oracle outlives
a test run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import select
import signal
import subprocess
import time
from collections.abc import Iterator

from .base import CloudUnderTest, Control

REPO = pathlib.Path(__file__).resolve().parents[3]
VENV = pathlib.Path(os.environ.get("ORACLE_VENV", REPO / ".venv-oracle"))
PYTHON = VENV / "bin" / "python"
SERVER = REPO / "tests" / "oracle" / "nova_server.py"
STAMP = VENV / ".hastack-oracle-stamp"

START_TIMEOUT = 180.0  # seconds; a 4-host oracle is ready in about 5 s
MAX_LIFETIME = 3600.0  # the oracle kills itself after this, whatever happens


def unavailable() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    if not PYTHON.exists():
        return f"{VENV} is missing (run scripts/oracle-venv.sh nova)"
    if not STAMP.exists():
        return f"{VENV} is incomplete (run scripts/oracle-venv.sh nova)"
    return None


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def _read_ready_line(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, object]:
    assert proc.stdout is not None
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nova oracle did not become ready in time")
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"nova oracle exited with {proc.wait(5)} before ready")
            buf += chunk
        elif proc.poll() is not None:
            raise RuntimeError(f"nova oracle exited with {proc.returncode} before ready")
    return json.loads(buf.split(b"\n", 1)[0])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def start(tmp_path: pathlib.Path, hosts: int) -> Iterator[CloudUnderTest]:
    """Run a real-Nova cloud with ``hosts`` compute hosts until the block exits."""
    workdir = tmp_path / "nova-oracle"
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(PYTHON), str(SERVER), "--hosts", str(hosts), "--workdir", str(workdir)]
    with run_oracle(cmd, workdir, "nova", START_TIMEOUT, MAX_LIFETIME) as ready:
        yield CloudUnderTest(
            backend="nova_oracle",
            clouds_yaml=pathlib.Path(str(ready["clouds_yaml"])),
            cloud_name=str(ready["cloud"]),
            control=Control(url=str(ready["control_url"])),
            hosts=[str(h) for h in ready["hosts"]],  # type: ignore[union-attr]
            service_down_time=int(ready["service_down_time"]),  # type: ignore[call-overload]
        )


@contextlib.contextmanager
def run_oracle(
    cmd: list[str], workdir: pathlib.Path, name: str, start_timeout: float, max_lifetime: float
) -> Iterator[dict[str, object]]:
    """Run an oracle server (``cmd`` plus the lifetime flags) in ``workdir``; yield its ready
    message; stop it on exit.  Start-up failures carry the tail of its stderr and log."""
    stderr_path = workdir / "stderr.log"
    # The oracles read no OS_* variables, but keep the child free of any cloud settings
    # of the developer's shell all the same.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    cmd = [*cmd, "--exit-on-stdin-eof", "--max-lifetime", str(max_lifetime)]
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
    try:
        try:
            ready = _read_ready_line(proc, time.monotonic() + start_timeout)
        except (TimeoutError, RuntimeError, ValueError) as exc:
            raise RuntimeError(
                f"{name} oracle: {exc}\n--- stderr ---\n{_tail(stderr_path)}\n"
                f"--- {name}.log ---\n{_tail(workdir / f'{name}.log')}"
            ) from exc
        if not ready.get("ready"):
            raise RuntimeError(f"{name} oracle failed to start:\n{ready.get('error')}")
        yield ready
    finally:
        _stop(proc)
