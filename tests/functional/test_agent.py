"""``hastack agent`` as real processes, heartbeating over real UDP to the controller's real
:class:`AgentListener`: local checks reported, a frozen agent detected, and self-fencing through
the software watchdog (its action writes a file here instead of rebooting this machine).

Cutting one node off is done with a UDP relay between its agent and the listener: the only
stand-in, because one machine's loopback cannot be partitioned otherwise without root-only
firewall rules.
"""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hastack.clock import SystemClock
from hastack.drivers.signals.agents import AgentListener
from hastack.policy.detection import PROFILES
from hastack.ports.signals import Leadership
from tests.functional.harness import wait_for

pytestmark = [pytest.mark.wire, pytest.mark.timeout(120)]

KEY = "agent-test-key-0123456789"
AFTER, WD, INTERVAL = 1.5, 1, 0.25


class Relay:
    """A UDP forwarder between one agent and the listener that can be cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut = False
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.agent: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.front.getsockname()[1]}"

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.front, selectors.EVENT_READ)
        sel.register(self.back, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data, peer = sock.recvfrom(9000)
                if self.cut:
                    continue
                if sock is self.front:
                    self.agent = peer
                    self.back.sendto(data, self.target)
                elif self.agent is not None:
                    self.front.sendto(data, self.agent)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.front.close()
        self.back.close()


class Site:
    """A leading (or not) listener and the agents started against it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key_file = workdir / "agent.key"
        self.key_file.write_text(KEY)
        self.lead = Leadership(True, 1, time.time())
        self.listener = AgentListener(
            ("127.0.0.1", 0),
            KEY.encode(),
            SystemClock(),
            PROFILES["fast"],
            name="ctl-test",
            peer_gap=0.6,  # below AFTER / 2
            leadership=lambda: self.lead,
        ).start()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.relays: list[Relay] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.address[1]}"

    def relay(self) -> Relay:
        relay = Relay(self.listener.address)
        self.relays.append(relay)
        return relay

    def agent_config(self, host: str, **raw: Any) -> Path:
        config = {
            "host": host,
            "controllers": [self.address],
            "key_file": str(self.key_file),
            "listen": "127.0.0.1:0",
            "interval": INTERVAL,
            "check_interval": 0.5,
            **raw,
        }
        path = self.workdir / f"{host}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def self_fence(self, fired: Path, **raw: Any) -> dict[str, Any]:
        action = ["sh", "-c", f"date +%s.%N > {fired}"]
        return {"enabled": True, "after": AFTER, "watchdog": "soft", "timeout": WD,
                "soft_action": action, **raw}  # fmt: skip

    def start(self, host: str, **raw: Any) -> subprocess.Popen[bytes]:
        config = self.agent_config(host, **raw)
        log = (self.workdir / f"{host}.log").open("ab")
        cmd = [sys.executable, "-m", "hastack", "agent", "--config", str(config)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        wait_for(lambda: self.fresh(host), 15, f"{host}'s agent heartbeats")
        return proc

    def reading(self, host: str) -> Any:
        return self.listener.read([host], time.time()).get(host)

    def fresh(self, host: str) -> bool:
        reading = self.reading(host)
        return reading is not None and reading.lost is False

    def agent_port(self, host: str) -> int:
        """The peer port the agent logged it listens on."""
        text = (self.workdir / f"{host}.log").read_text()
        marker = "listening on 127.0.0.1:"
        return int(text.split(marker, 1)[1].split()[0])

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        for relay in self.relays:
            relay.close()
        self.listener.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_check_config_and_heartbeats_with_failing_checks(site: Site) -> None:
    checks = [
        {"name": "fine", "command": ["true"]},
        {"name": "disk", "command": ["sh", "-c", "echo disk full; exit 3"]},
    ]
    config = site.agent_config("compute01", checks=checks)
    out = subprocess.run(
        [sys.executable, "-m", "hastack", "agent", "--config", str(config), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "valid; host compute01, 1 controller(s), 2 check(s), self-fencing off" in out.stdout
    proc = site.start("compute01", checks=checks)
    wait_for(
        lambda: "failing: disk (exit 3: disk full)" in site.reading("compute01").detail,
        10,
        "the failing check is reported",
    )
    proc.send_signal(signal.SIGSTOP)  # a frozen agent: its signal is lost after stale_after
    took = wait_for(lambda: site.reading("compute01").lost, 10, "a frozen agent is noticed")
    assert took >= PROFILES["fast"].agent_stale_after - 2 * INTERVAL
    proc.send_signal(signal.SIGCONT)
    wait_for(lambda: site.fresh("compute01"), 10, "the agent is heard again")


def test_a_node_cut_off_alone_resets_itself(site: Site, tmp_path: Path) -> None:
    fired = tmp_path / "fired"
    relay = site.relay()
    site.start("compute02")  # a peer, straight to the listener
    peer = f"127.0.0.1:{site.agent_port('compute02')}"
    site.start(
        "compute01",
        controllers=[relay.address],
        self_fence=site.self_fence(fired, peers={"compute02": peer}),
    )
    time.sleep(AFTER + WD + 1)
    assert not fired.exists(), "fed while the leader answers"
    relay.cut = True
    cut = time.time()
    wait_for(fired.exists, AFTER + INTERVAL + WD + 5, "the watchdog fires")
    elapsed = float(fired.read_text()) - cut
    assert AFTER - 2 * INTERVAL <= elapsed <= AFTER + 2 * INTERVAL + WD + 1.5, elapsed
    # the leader's proof: compute01 silent, its peer in contact all along
    proof = site.listener.proof("compute01", time.time(), margin=0.5)
    wait_for(
        lambda: site.listener.proof("compute01", time.time(), margin=0.5).proven,
        10,
        f"the leader proves compute01 off ({proof.reason})",
    )
    assert proof.at is not None and proof.at >= float(fired.read_text())


def test_when_every_node_loses_the_controllers_none_resets(site: Site, tmp_path: Path) -> None:
    fired = tmp_path / "fired"
    site.start("compute02")
    peer = f"127.0.0.1:{site.agent_port('compute02')}"
    site.start("compute01", self_fence=site.self_fence(fired, peers={"compute02": peer}))
    site.lead = Leadership(False)  # no leader anywhere: a controller-plane outage
    time.sleep(AFTER + INTERVAL + WD + 2)
    assert not fired.exists(), "a node reset itself although its peer lost the leader too"
    assert not site.listener.proof("compute01", time.time(), margin=0).proven
    site.lead = Leadership(True, 2, time.time())
    wait_for(lambda: site.fresh("compute01"), 5, "heard again")
    assert not fired.exists()


def test_a_killed_agent_fires_a_cleanly_stopped_one_does_not(site: Site, tmp_path: Path) -> None:
    stopped, killed = tmp_path / "stopped", tmp_path / "killed"
    clean = site.start("compute01", self_fence=site.self_fence(stopped))
    crash = site.start("compute02", self_fence=site.self_fence(killed))
    clean.terminate()
    crash.kill()
    assert clean.wait(10) == 0
    wait_for(killed.exists, WD + 3, "the killed agent's watchdog fires")
    time.sleep(WD + 1)
    assert not stopped.exists(), "a clean stop disarms the watchdog"
