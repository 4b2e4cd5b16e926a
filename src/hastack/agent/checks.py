"""Local checks: is a systemd unit active, does a command exit 0.  Each returns None when
healthy, else one line saying what is wrong; none raises."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from hastack.agent.config import CheckConfig


def run_check(check: CheckConfig) -> str | None:
    if check.systemd is not None:
        return _run(["systemctl", "is-active", check.systemd], check.timeout, unit=True)
    assert check.command is not None
    return _run(list(check.command), check.timeout, unit=False)


def _run(argv: Sequence[str], timeout: float, *, unit: bool) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g}s"
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc.strerror}"
    if done.returncode == 0:
        return None
    out = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
    last = out[-1][:200] if out else ""
    if unit:
        return last or f"not active (exit {done.returncode})"
    return f"exit {done.returncode}" + (f": {last}" if last else "")
