"""TCP probes against a running simulator: its per-host ports follow the hosts' physical state
(power, hang, isolation) and the controller's :class:`TcpProbe` turns connects into readings.

The targets come from the ``hastack.yaml`` the simulator writes, as an operator's would, and
faults are injected with the functions ``hastack sim fail`` uses."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hastack.drivers.signals.probe import TcpProbe
from hastack.policy.detection import PROFILES
from hastack.sim import faults
from hastack.sim.build import CloudSpec
from hastack.sim.probe import SWEEP_INTERVAL
from hastack.sim.runner import RunningSim, SimOptions

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

PROFILE = PROFILES["default"]
HOSTS = 5


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSim]:
    workdir = tmp_path_factory.mktemp("probe-sim")
    options = SimOptions(spec=CloudSpec(hosts=HOSTS, instances=10, seed=7), workdir=workdir)
    with RunningSim(options) as running:
        yield running


@pytest.fixture(autouse=True)
def healthy(sim: RunningSim) -> Iterator[None]:
    yield
    for name in sim.world.hosts:
        faults.recover(sim.world, name)
    assert sim.probes is not None and sim.probes.settle()


@pytest.fixture(scope="module")
def targets(sim: RunningSim) -> dict[str, tuple[str, int]]:
    config = yaml.safe_load(Path(sim.files["config"]).read_text())
    return {h: (c["probe"]["address"], c["probe"]["port"]) for h, c in config["hosts"].items()}


@pytest.fixture
def probe(targets: dict[str, tuple[str, int]]) -> TcpProbe:
    return TcpProbe(targets, PROFILE, timeout=1.0)


def connects(target: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(target, timeout=1.0):
            return True
    except OSError:
        return False


def wait_until(condition: object, seconds: float) -> float:
    """Seconds until ``condition()`` held (fails the test past ``seconds``)."""
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - start < seconds, f"not within {seconds}s"
        time.sleep(0.01)
    return time.monotonic() - start


def test_config_and_summary_give_each_host_its_probe_port(
    sim: RunningSim, targets: dict[str, tuple[str, int]]
) -> None:
    config = yaml.safe_load(Path(sim.files["config"]).read_text())
    assert sorted(targets) == sorted(sim.world.hosts)
    for name, host in sim.world.hosts.items():
        assert config["hosts"][name]["probe"] == {"address": "127.0.0.1", "port": host.probe_port}
        assert [lvl["devices"][0]["type"] for lvl in config["hosts"][name]["fencing"]] == [
            "ipmi",
            "redfish",
        ]
    assert len({port for _, port in targets.values()}) == HOSTS
    assert "probe_ports" in sim.summary()


def test_reachable_hosts_are_not_lost(probe: TcpProbe, sim: RunningSim) -> None:
    for now in range(PROFILE.probe_failures + 1):
        readings = probe.read(sorted(sim.world.hosts), float(now))
        assert {h: r.lost for h, r in readings.items()} == dict.fromkeys(sim.world.hosts, False)


@pytest.mark.parametrize("mode", ["power", "hang", "isolate"])
def test_unreachable_host_is_lost_after_probe_failures_and_returns_on_recover(
    mode: str, sim: RunningSim, probe: TcpProbe, targets: dict[str, tuple[str, int]]
) -> None:
    host, others = "compute02", [h for h in sim.world.hosts if h != "compute02"]
    faults.fail(sim.world, host, mode)
    assert sim.probes is not None and sim.probes.settle()
    assert not connects(targets[host]), "a down host's port must refuse connects"
    for attempt in range(1, PROFILE.probe_failures + 1):
        readings = probe.read([host, *others], float(attempt))
        assert readings[host].lost is (attempt >= PROFILE.probe_failures), readings[host]
        assert "ECONNREFUSED" in readings[host].detail
        assert all(readings[h].lost is False for h in others)
    faults.recover(sim.world, host)
    assert sim.probes.settle()
    assert sim.world.hosts[host].probe_port == targets[host][1]  # the same port, re-opened
    assert connects(targets[host])
    assert probe.read([host], 10.0)[host].lost is False


def test_compute_crash_leaves_the_host_reachable(
    sim: RunningSim, probe: TcpProbe, targets: dict[str, tuple[str, int]]
) -> None:
    faults.fail(sim.world, "compute03", "compute-crash")
    assert sim.probes is not None and sim.probes.settle()
    assert connects(targets["compute03"])
    for now in range(PROFILE.probe_failures + 1):
        assert probe.read(["compute03"], float(now))["compute03"].lost is False


def test_ports_follow_faults_promptly_without_settle(
    sim: RunningSim, targets: dict[str, tuple[str, int]]
) -> None:
    target = targets["compute04"]
    faults.fail(sim.world, "compute04", "hang")  # emits events: the loop wakes at once
    down = wait_until(lambda: not connects(target), 2.0)
    faults.recover(sim.world, "compute04")
    up = wait_until(lambda: connects(target), 2.0)
    print(f"\nport closed {down * 1000:.1f} ms after the fault, re-opened {up * 1000:.1f} ms")


def test_a_change_without_an_event_is_caught_by_the_sweep(
    sim: RunningSim, targets: dict[str, tuple[str, int]]
) -> None:
    host = sim.world.hosts["compute05"]
    with sim.world.lock:
        host.isolated = True  # no event: only the periodic sweep can notice
    took = wait_until(lambda: not connects(targets["compute05"]), SWEEP_INTERVAL + 2.0)
    print(f"\nsweep noticed in {took * 1000:.0f} ms (interval {SWEEP_INTERVAL}s)")
    with sim.world.lock:
        host.isolated = False
    wait_until(lambda: connects(targets["compute05"]), SWEEP_INTERVAL + 2.0)


def test_probe_ports_follow_the_bmc_switch(tmp_path: Path) -> None:
    spec = CloudSpec(hosts=2, instances=0)
    with RunningSim(SimOptions(spec=spec, workdir=tmp_path / "off", bmc=False)) as off:
        assert off.probes is None
        config = yaml.safe_load(off.files["config"].read_text())
        assert "probe" not in config["hosts"]["compute01"]
    with RunningSim(SimOptions(spec=spec, workdir=tmp_path / "on", bmc=False, probe=True)) as on:
        config = yaml.safe_load(on.files["config"].read_text())
        target = config["hosts"]["compute01"]["probe"]
        assert connects((target["address"], target["port"]))
