"""A local etcd cluster: N real ``etcd`` processes (Debian ``etcd-server``) on 127.0.0.1.

For the tests, the benchmarks and the HA demo: each member gets free client and peer ports and
its own data directory; :meth:`LocalEtcdCluster.start` returns once every member reports
healthy.  Members can be killed, stopped (SIGSTOP) and restarted one by one to inject faults,
or all restarted together on their data directories after the whole cluster went down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ETCD = "etcd"


def etcd_binary() -> str | None:
    """The etcd server's path, or None when it is not installed."""
    return shutil.which(ETCD)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def healthy(self) -> bool:
        try:
            r = requests.get(f"{self.client_url}/health", timeout=1)
            return r.status_code == 200 and r.json().get("health") in (True, "true")
        except (requests.RequestException, ValueError):
            return False


class LocalEtcdCluster:
    """``size`` etcd members under ``workdir``; use as a context manager or start()/stop()."""

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        *,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
    ) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server)")
        self.binary = binary
        self.workdir = workdir
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.members = [
            Member(f"etcd{n}", _free_port(), _free_port(), workdir / f"etcd{n}")
            for n in range(1, size + 1)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _command(self, m: Member, state: str) -> list[str]:
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            self.binary,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", f"hastack-{os.getpid()}-{id(self)}",
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
        ]  # fmt: skip

    def _spawn(self, m: Member, state: str) -> None:
        m.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{m.name}.log").open("ab")
        m.proc = subprocess.Popen(
            self._command(m, state), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()

    def start(self, timeout: float = 30.0) -> LocalEtcdCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for m in self.members:
                self._spawn(m, "new")
            self.wait_healthy(self.members, timeout)
        except BaseException:
            self.stop()  # no member left behind when the cluster does not come up
            raise
        return self

    def wait_healthy(self, members: list[Member], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(m.healthy() for m in members):
                return
            for m in members:
                if m.proc is not None and m.proc.poll() is not None:
                    log = (self.workdir / f"{m.name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"etcd member {m.name} exited:\n{log}")
            time.sleep(0.1)
        raise RuntimeError(f"etcd members not healthy within {timeout:g}s")

    def leader(self) -> Member | None:
        """The member that is the raft leader now, or None."""
        for m in self.members:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                r = requests.post(f"{m.client_url}/v3/maintenance/status", data="{}", timeout=1)
                doc = r.json()
                if doc["leader"] == doc["header"]["member_id"]:
                    return m
        return None

    def kill(self, m: Member) -> None:
        if m.proc is not None and m.proc.poll() is None:
            m.proc.kill()
            m.proc.wait(10)

    def pause(self, m: Member) -> None:
        if m.proc is not None:
            m.proc.send_signal(signal.SIGSTOP)

    def resume(self, m: Member) -> None:
        if m.proc is not None:
            m.proc.send_signal(signal.SIGCONT)

    def restart(self, m: Member, timeout: float = 30.0) -> None:
        """Start a killed member again on its data directory (it rejoins the cluster)."""
        self.kill(m)
        self._spawn(m, "existing")
        self.wait_healthy([m], timeout)

    def restart_all(self, timeout: float = 30.0) -> None:
        """Start every member again on its data directory, all together (after the whole
        cluster went down: one member alone has no quorum and never reports healthy)."""
        for m in self.members:
            self.kill(m)
        for m in self.members:
            self._spawn(m, "existing")
        self.wait_healthy(self.members, timeout)

    def stop(self) -> None:
        for m in self.members:
            if m.proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                m.proc.send_signal(signal.SIGCONT)
                m.proc.terminate()
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)

    def __enter__(self) -> LocalEtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
