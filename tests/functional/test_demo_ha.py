"""``hastack demo --ha`` end to end, as an operator runs it: a 3-member etcd cluster, ``hastack
sim serve`` and three ``hastack serve`` processes; the leader is SIGKILLed mid-evacuation.  The
demo must exit 0, and its summary must show the takeover, the finished recovery, no VM
evacuated twice and the killed controller back as a follower; nothing may be left running.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hastack.demo_ha import LEASE_TTL, TICK
from tests.etcd_required import require_etcd

pytestmark = [pytest.mark.etcd, pytest.mark.wire, pytest.mark.timeout(240)]


def run_demo(workdir: Path) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "hastack", "demo", "--ha", "--workdir", str(workdir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo stops its processes on SIGTERM
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"hastack demo --ha did not finish:\n{out}")
    return proc.returncode, out


def leftovers(workdir: Path) -> list[str]:
    """Command lines of processes still running on ``workdir``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(str(workdir) in a for a in args):
            found.append(" ".join(args))
    return found


def test_demo_ha_kills_the_leader_and_another_finishes_without_repeats(tmp_path: Path) -> None:
    require_etcd()
    code, out = run_demo(tmp_path)
    assert code == 0, out
    assert "Demo finished." in out, out
    assert re.search(r"dashboard +http://127\.0\.0\.1:\d+/#token=reader-\S+", out), out
    takeover = re.search(
        r"takeover +(\S+) \(epoch (\d+)\) -> (\S+) \(epoch (\d+)\) in ([\d.]+)s", out
    )
    assert takeover, out
    old, old_epoch, new, new_epoch, seconds = takeover.groups()
    assert old != new and int(new_epoch) > int(old_epoch)
    assert float(seconds) <= LEASE_TTL + TICK + 2.0, out  # TTL + a tick, + etcd's lessor
    evacuated = re.search(r"evacuated +(\d+)/(\d+) VMs of \S+ confirmed ACTIVE", out)
    assert evacuated and evacuated[1] == evacuated[2] and int(evacuated[1]) >= 20, out
    nova = re.search(r"(\d+) evacuation records for (\d+) VMs; evacuated more than once: 0", out)
    assert nova and nova[1] == nova[2] == evacuated[1], out
    assert f"{old} runs as a follower: {new} still leads" in out, out
    assert not leftovers(tmp_path)
