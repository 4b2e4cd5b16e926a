"""The signal sources: TCP probes over real loopback sockets, Nova heartbeats from a stand-in
compute port, BMC power over the simulator's real IPMI BMCs."""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hastack.domain.hosts import Signal
from hastack.drivers.fencing.factory import build_fence_device
from hastack.drivers.signals.bmc import BmcPower
from hastack.drivers.signals.nova import NovaHeartbeat
from hastack.drivers.signals.probe import TcpProbe
from hastack.errors import TransientError
from hastack.policy.detection import PROFILES
from hastack.ports.compute import ComputeService
from hastack.ports.fencing import FenceDevice, FenceResult, PowerState
from hastack.sim import faults
from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions

FAST = PROFILES["fast"]  # probe_failures 2

# -- TCP probe


@contextlib.contextmanager
def loopback_ports(up: int, down: int) -> Iterator[tuple[list[int], list[int]]]:
    """``up`` listening ports and ``down`` ports that refuse (bound, not listening: the port
    stays ours, so nothing else can start answering on it mid-test)."""
    socks: list[socket.socket] = []
    try:
        ports: tuple[list[int], list[int]] = ([], [])
        for i in range(up + down):
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
            if i < up:
                sock.listen(8)
            ports[i >= up].append(sock.getsockname()[1])
        yield ports
    finally:
        for sock in socks:
            sock.close()


def test_tcp_probe_reads_1500_hosts_at_once() -> None:
    with loopback_ports(750, 750) as (up, down):
        targets = {f"up{i}": ("127.0.0.1", p) for i, p in enumerate(up)}
        targets |= {f"down{i}": ("127.0.0.1", p) for i, p in enumerate(down)}
        probe = TcpProbe(targets, FAST, timeout=2.0)
        hosts = sorted(targets)
        for now in (1.0, 2.0):
            wall, cpu = time.perf_counter(), time.process_time()
            readings = probe.read(hosts, now)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"\nTcpProbe.read of {len(hosts)} hosts: {wall:.3f}s wall, {cpu:.3f}s CPU")
            assert wall < 30
            assert sorted(readings) == hosts
            assert all(readings[h].lost is False for h in targets if h.startswith("up"))
            lost = [readings[h].lost for h in targets if h.startswith("down")]
            assert lost == [now >= FAST.probe_failures] * len(down)
        assert "ECONNREFUSED" in readings["down0"].detail
        assert all(r.signal == Signal.PROBE and r.at == 2.0 for r in readings.values())


def test_tcp_probe_counts_failures_in_a_row_and_skips_hosts_without_a_target() -> None:
    with loopback_ports(0, 1) as (_, [port]):
        probe = TcpProbe({"a": ("127.0.0.1", port)}, FAST)
        first = probe.read(["a", "nowhere"], 1.0)
        assert set(first) == {"a"} and first["a"].lost is False  # 1 of 2 failed
        assert "1 of 2 failed" in first["a"].detail
        assert probe.read(["a", "a"], 2.0)["a"].lost is True
    # the port is free again: listen on it, and one success resets the count
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(4)
        assert probe.read(["a"], 3.0)["a"].lost is False
    assert probe.read(["a"], 4.0)["a"].lost is False  # one failure after a success: not lost
    assert probe.read(["a"], 5.0)["a"].lost is True


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full queue")
def test_tcp_probe_times_out_on_a_silent_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        target = server.getsockname()
        fillers = []
        for _ in range(3):  # fill the accept queue: later SYNs are dropped, never answered
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(target)
            fillers.append(filler)
        time.sleep(0.05)
        probe = TcpProbe({"a": target}, FAST, timeout=0.3)
        start = time.monotonic()
        reading = probe.read(["a"], 1.0)["a"]
        took = time.monotonic() - start
        for filler in fillers:
            filler.close()
    assert reading.lost is False and "no answer within 0.3s" in reading.detail
    assert 0.25 < took < 2.0


def test_tcp_probe_waits_for_descriptors_instead_of_failing_hosts() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with loopback_ports(200, 0) as (up, _):
        in_use = len(list(Path("/proc/self/fd").iterdir())) if Path("/proc/self/fd").exists() else 0
        if not in_use:
            pytest.skip("needs /proc/self/fd to size the limit")
        # A limit whose half (the probe's window) exceeds what is left: sockets run out (EMFILE)
        # mid-read, and the probe must wait for its own to close rather than fail hosts.
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 40, hard))
        try:
            probe = TcpProbe({f"h{i}": ("127.0.0.1", p) for i, p in enumerate(up)}, FAST)
            readings = probe.read([f"h{i}" for i in range(len(up))], 1.0)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r.lost for r in readings.values()] == [False] * len(up), {
        h: r.detail for h, r in readings.items() if r.lost is not False
    }


def test_tcp_probe_local_errors_are_no_data() -> None:
    probe = TcpProbe({"a": ("no-such-host.invalid", 22)}, FAST)
    for now in (1.0, 2.0, 3.0):
        reading = probe.read(["a"], now)["a"]
        assert reading.lost is None and "cannot resolve" in reading.detail


def test_tcp_probe_refuses_bad_targets() -> None:
    with pytest.raises(ValueError, match="port"):
        TcpProbe({"a": ("127.0.0.1", 0)}, FAST)
    with pytest.raises(ValueError, match="address"):
        TcpProbe({"a": ("", 22)}, FAST)


# -- Nova heartbeat


class FakeCompute:
    def __init__(self, services: list[ComputeService] | Exception) -> None:
        self.result = services
        self.calls = 0

    def services(self) -> list[ComputeService]:
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def service(host: str, updated_at: float | None, up: bool = True) -> ComputeService:
    return ComputeService(host, up, updated_at, forced_down=False, enabled=True)


def test_nova_heartbeat_reads_every_host_in_one_call() -> None:
    now = 1000.0
    compute = FakeCompute(
        [
            service("fresh", now - 5),
            service("stale", now - FAST.nova_stale_after - 1),
            service("down", now - 1, up=False),
            service("twice", now - 500, up=False),  # an old row for the same host...
            service("twice", now - 2),  # ...and the live one
        ]
    )
    readings = NovaHeartbeat(compute, FAST).read(["fresh", "stale", "down", "twice", "gone"], now)
    assert compute.calls == 1
    assert {h: r.lost for h, r in readings.items()} == {
        "fresh": False,
        "stale": True,
        "down": True,
        "twice": False,
        "gone": None,
    }
    assert all(r.signal == Signal.NOVA and r.at == now for r in readings.values())


@pytest.mark.parametrize("error", [TransientError("HTTP 503 from nova"), RuntimeError("bug")])
def test_nova_heartbeat_without_nova_is_no_data(error: Exception) -> None:
    readings = NovaHeartbeat(FakeCompute(error), FAST).read(["a", "b"], 5.0)
    assert {h: r.lost for h, r in readings.items()} == {"a": None, "b": None}
    assert "Nova could not be read" in readings["a"].detail


# -- BMC power


class FakeDevice:
    def __init__(self, name: str, power: PowerState, ok: bool = True, delay: float = 0) -> None:
        self.name = name
        self.power = power
        self.ok = ok
        self.delay = delay
        self.calls = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def status(self, timeout: float) -> FenceResult:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        time.sleep(self.delay)
        with self._lock:
            self.concurrent -= 1
        power = self.power if self.ok else PowerState.UNKNOWN
        return FenceResult(self.name, "status", power, self.ok, "fake", self.delay)

    def off(self, timeout: float) -> FenceResult:
        raise AssertionError("a signal source never switches power")

    on = off


def test_bmc_power_needs_every_device_to_agree() -> None:
    shared = FakeDevice("pdu", PowerState.ON)
    devices: dict[str, list[FenceDevice]] = {
        "on": [FakeDevice("bmc-on", PowerState.ON)],
        "off": [FakeDevice("bmc-off", PowerState.OFF)],
        "split": [FakeDevice("a", PowerState.ON), FakeDevice("b", PowerState.OFF)],
        "broken": [FakeDevice("bmc-x", PowerState.ON, ok=False)],
        "x": [shared],
        "y": [shared],
    }
    source = BmcPower(devices, timeout=1.0)
    try:
        readings = source.read([*devices, "unknown"], 7.0)
    finally:
        source.close()
    assert {h: r.lost for h, r in readings.items()} == {
        "on": False,
        "off": True,
        "split": None,
        "broken": None,
        "x": False,
        "y": False,
    }
    assert "disagree" in readings["split"].detail
    assert shared.calls == 1  # shared by two hosts, read once


def test_bmc_power_never_calls_a_device_still_busy_from_an_earlier_read() -> None:
    slow = FakeDevice("slow", PowerState.ON, delay=0.6)
    source = BmcPower({"h": [slow]}, timeout=0.1)  # budget 1.1 s: the first read waits for it
    try:
        assert source.read(["h"], 1.0)["h"].lost is False
        slow.delay = 3.0
        assert source.read(["h"], 2.0)["h"].lost is None  # overran its budget: no data
        reading = source.read(["h"], 3.0)["h"]  # ...and is not called again meanwhile
        assert reading.lost is None and "still running" in reading.detail
        assert slow.max_concurrent == 1 and slow.calls == 2
    finally:
        source.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSim]:
    workdir = tmp_path_factory.mktemp("signals-sim")
    options = SimOptions(spec=CloudSpec(hosts=4, instances=8, seed=11), workdir=workdir)
    with RunningSim(options) as running:
        yield running


@pytest.mark.wire
@pytest.mark.timeout(60)
def test_bmc_power_over_the_simulators_ipmi(sim: RunningSim) -> None:
    config = yaml.safe_load(Path(sim.files["config"]).read_text())
    devices = {
        host: [
            build_fence_device(spec, where=f"hosts.{host}.fencing[0]")
            for spec in entry["fencing"][0]["devices"]
        ]
        for host, entry in config["hosts"].items()
    }
    faults.fail(sim.world, "compute01", "power")
    faults.fail(sim.world, "compute03", "bmc-dead")
    source = BmcPower(devices, timeout=2.0)
    try:
        start = time.monotonic()
        readings = source.read(sorted(devices), 1.0)
        print(f"\nBmcPower.read of {len(devices)} IPMI BMCs: {time.monotonic() - start:.2f}s")
    finally:
        source.close()
        for host in ("compute01", "compute03"):
            faults.recover(sim.world, host)
    assert {h: r.lost for h, r in readings.items()} == {
        "compute01": True,
        "compute02": False,
        "compute03": None,
        "compute04": False,
    }, {h: r.detail for h, r in readings.items()}
    assert "ipmi 127.0.0.1" in readings["compute01"].detail


def test_errno_names_are_what_the_detail_shows() -> None:
    # The detail format the engine's verdicts quote: strerror and the symbolic name.
    with loopback_ports(0, 1) as (_, [port]):
        reading = TcpProbe({"a": ("127.0.0.1", port)}, FAST).read(["a"], 0.0)["a"]
    assert f"({errno.errorcode[errno.ECONNREFUSED]})" in reading.detail
