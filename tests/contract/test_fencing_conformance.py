"""One conformance suite for the fencing port, over every driver, against BMCs on the wire.

Each driver is built by :func:`build_fence_device` from the configuration shape
``hastack sim serve`` writes, and talks to a real :class:`BmcFarm` on 127.0.0.1 over an
:class:`InMemoryBmcBackend`: pyghmi (IPMI), sushy (Redfish), and Debian's ``fence_ipmilan`` and
``fence_redfish`` run through :class:`FenceAgentFencer`.  Every test takes a host of its own from
a module-wide farm, so that a BMC left hung or a pyghmi session left pending by one test cannot
reach the next.
"""

from __future__ import annotations

import logging
import stat
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hastack.drivers.fencing.agent import FenceAgentFencer, find_agent
from hastack.drivers.fencing.factory import build_fence_device
from hastack.ports.fencing import FenceDevice, FenceResult, PowerState
from hastack.sim.bmc import BmcCondition, BmcEndpoint, BmcFarm, InMemoryBmcBackend, PowerAction

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

DRIVERS = ("ipmi", "redfish", "agent-ipmilan", "agent-redfish")
AGENTS = {"agent-ipmilan": "fence_ipmilan", "agent-redfish": "fence_redfish"}
HOSTS = tuple(f"fc-{i:02d}" for i in range(64))
TIMEOUT = 5.0  # for a BMC that answers
SHORT = 3.0  # for a BMC that does not
MARGIN = 1.0  # the port's promise: back within timeout + 1 s


def secret(host: str) -> str:
    return f"Pw{host[-2:]}-x7!q"  # distinctive, so that a leak is found by substring


@dataclass
class Rig:
    farm: BmcFarm
    backend: InMemoryBmcBackend
    free: Iterator[str]

    def spec(self, driver: str, host: str, password: str | None = None) -> dict[str, Any]:
        password = password or secret(host)
        farm = self.farm
        if driver == "ipmi":
            return {
                "type": "ipmi",
                "address": "127.0.0.1",
                "port": farm.ipmi_port(host),
                "username": "admin",
                "password": password,
            }
        if driver == "redfish":
            return {
                "type": "redfish",
                "address": farm.redfish_url,
                "system": farm.systems_uri(host),
                "verify_tls": False,
                "username": "admin",
                "password": password,
            }
        if driver == "agent-ipmilan":
            options: dict[str, Any] = {"ip": "127.0.0.1", "ipport": farm.ipmi_port(host)}
            options |= {"lanplus": True}
        else:
            options = {"ip": "127.0.0.1", "ipport": farm.redfish_port, "ssl_insecure": True}
            options |= {"systems_uri": farm.systems_uri(host)}
        options |= {"username": "admin", "power_wait": 0}
        return {"type": "agent", "agent": AGENTS[driver], "options": options, "password": password}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    backend = InMemoryBmcBackend(HOSTS)
    endpoints = [BmcEndpoint(h, "admin", secret(h), ipmi_port=0) for h in HOSTS]
    cert_dir = tmp_path_factory.mktemp("fencing-cert")
    with BmcFarm(backend, endpoints, redfish_port=0, cert_dir=cert_dir) as farm:
        yield Rig(farm, backend, iter(HOSTS))


@pytest.fixture
def host(rig: Rig) -> str:
    name = next(rig.free)
    rig.backend.set_power_state(name, True)
    rig.backend.set_condition(name, BmcCondition.OK)
    return name


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name in AGENTS and find_agent(AGENTS[name]) is None:
        pytest.skip(f"{AGENTS[name]} is not installed (Debian package fence-agents)")
    return name


def device(rig: Rig, driver: str, host: str, password: str | None = None) -> FenceDevice:
    spec = rig.spec(driver, host, password)
    return build_fence_device(spec, where=f"hosts.{host}.fencing[0].devices[0]")


def actions(rig: Rig, host: str) -> list[PowerAction]:
    return [action for name, action in rig.backend.actions() if name == host]


def assert_result(result: FenceResult, action: str, *, ok: bool, power: PowerState) -> None:
    assert (result.action, result.ok, result.power) == (action, ok, power), result
    assert result.reason and "\n" not in result.reason


# -- answers


def test_status_reads_the_power(rig: Rig, driver: str, host: str) -> None:
    fencer = device(rig, driver, host)
    assert_result(fencer.status(TIMEOUT), "status", ok=True, power=PowerState.ON)
    rig.backend.set_power_state(host, False)
    result = fencer.status(TIMEOUT)
    assert_result(result, "status", ok=True, power=PowerState.OFF)
    assert result.device == fencer.name and actions(rig, host) == []


def test_off_is_confirmed_by_a_read_back(rig: Rig, driver: str, host: str) -> None:
    result = device(rig, driver, host).off(TIMEOUT)
    assert_result(result, "off", ok=True, power=PowerState.OFF)
    assert result.reason == "power off confirmed" and result.elapsed < TIMEOUT
    assert not rig.backend.power_is_on(host) and actions(rig, host) == [PowerAction.OFF]


def test_off_when_already_off_is_ok(rig: Rig, driver: str, host: str) -> None:
    rig.backend.set_power_state(host, False)
    result = device(rig, driver, host).off(TIMEOUT)
    assert_result(result, "off", ok=True, power=PowerState.OFF)
    assert result.reason == "already off" and actions(rig, host) == []


def test_on_is_confirmed_by_a_read_back(rig: Rig, driver: str, host: str) -> None:
    rig.backend.set_power_state(host, False)
    result = device(rig, driver, host).on(TIMEOUT)
    assert_result(result, "on", ok=True, power=PowerState.ON)
    assert result.reason == "power on confirmed"
    assert rig.backend.power_is_on(host) and actions(rig, host) == [PowerAction.ON]


@pytest.mark.wire
def test_a_slow_bmc_still_fences(rig: Rig, driver: str, host: str) -> None:
    rig.backend.set_condition(host, BmcCondition.SLOW, delay=0.3)
    result = device(rig, driver, host).off(15)  # fence_ipmilan: ~8 s (3 runs, ~9 round trips each)
    assert_result(result, "off", ok=True, power=PowerState.OFF)
    assert not rig.backend.power_is_on(host)


# -- refusals


def test_wrong_password_fails_and_touches_nothing(rig: Rig, driver: str, host: str) -> None:
    fencer = device(rig, driver, host, password="wrong-password")
    for result in (fencer.status(TIMEOUT), fencer.off(TIMEOUT)):
        assert not result.ok and result.power == PowerState.UNKNOWN, result
        assert result.elapsed < TIMEOUT
        if driver not in AGENTS:  # the agents say "unable to connect/login" or less
            assert result.reason.startswith("authentication failed"), result
    assert rig.backend.power_is_on(host) and actions(rig, host) == []


def test_busy_bmc_fails_and_touches_nothing(rig: Rig, driver: str, host: str) -> None:
    rig.backend.set_condition(host, BmcCondition.BUSY)
    result = device(rig, driver, host).off(TIMEOUT)
    assert not result.ok and result.elapsed < TIMEOUT, result
    if driver not in AGENTS:  # an agent's exit code 1 does not tell busy from broken
        assert result.reason.startswith("BMC busy"), result
    assert rig.backend.power_is_on(host) and actions(rig, host) == []


@pytest.mark.wire
@pytest.mark.parametrize("condition", [BmcCondition.DEAD, BmcCondition.HUNG])
def test_silent_bmc_fails_in_time_and_does_not_poison_the_next_call(
    rig: Rig, driver: str, host: str, condition: BmcCondition
) -> None:
    fencer = device(rig, driver, host)
    rig.backend.set_condition(host, condition)
    started = time.monotonic()
    result = fencer.off(SHORT)
    waited = time.monotonic() - started
    assert not result.ok and result.power == PowerState.UNKNOWN, result
    assert waited < SHORT + MARGIN and result.elapsed <= waited
    assert rig.backend.power_is_on(host) and actions(rig, host) == []
    rig.backend.set_condition(host, BmcCondition.OK)
    again = fencer.status(SHORT)  # pyghmi may still hold the first, pending login
    assert_result(again, "status", ok=True, power=PowerState.ON)


# -- secrets


def test_the_password_is_never_shown(
    rig: Rig, driver: str, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = device(rig, driver, host), device(rig, driver, host, password=secret(host) + "9")
    results = [good.status(TIMEOUT), good.off(TIMEOUT), bad.status(TIMEOUT)]
    shown = [repr(good), repr(bad), good.name, bad.name, caplog.text, *map(repr, results)]
    assert [r.ok for r in results] == [True, True, False]
    assert not [text for text in shown if secret(host) in text]
    if isinstance(good, FenceAgentFencer):
        assert not [arg for arg in good.argv() if secret(host) in arg]
        assert f"password={secret(host)}\n" in good.stdin_text("status")


# -- the agent protocol itself, with a fake agent that records what it was given

FAKE_AGENT = textwrap.dedent(
    """\
    import json, os, sys, time
    state = os.path.join(os.path.dirname(__file__), "state")
    given = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if line)
    with open(state + ".log", "a") as log:
        log.write(json.dumps({"argv": sys.argv, "stdin": given}) + "\\n")
    if given.get("sleep"):
        time.sleep(float(given["sleep"]))
    power = open(state).read() if os.path.exists(state) else "on"
    if given["action"] == "status":
        sys.exit(0 if power == "on" else 2)
    open(state, "w").write(given["action"])
    """
)


@pytest.fixture
def fake_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "fence_fake"
    script.write_text(f"#!{sys.executable}\n{FAKE_AGENT}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    return tmp_path


def test_agent_gets_its_options_and_password_on_stdin_only(fake_agent: Path) -> None:
    spec = {"type": "agent", "agent": "fence_fake", "password": "hunter2-secret"}
    spec["options"] = {"ip": "10.0.0.9", "plug": 4, "lanplus": True, "verbose": False}
    fencer = build_fence_device(spec, where="hosts.h.fencing[0].devices[0]")
    result = fencer.off(TIMEOUT)
    assert_result(result, "off", ok=True, power=PowerState.OFF)
    runs = [line for line in (fake_agent / "state.log").read_text().splitlines()]
    assert len(runs) == 3  # status, off, the read-back
    assert "hunter2-secret" not in "".join(runs).split('"stdin"')[0]  # not in any argv
    assert '"password": "hunter2-secret"' in runs[0] and '"lanplus": "1"' in runs[0]
    assert '"verbose"' not in runs[0] and '"plug": "4"' in runs[0]
    assert fencer.name == "fence_fake 10.0.0.9 plug=4"


def test_agent_is_killed_at_the_deadline(fake_agent: Path) -> None:
    spec = {"type": "agent", "agent": "fence_fake", "options": {"sleep": 30}}
    fencer = build_fence_device(spec, where="w")
    result = fencer.status(1.0)
    assert not result.ok and result.elapsed < 1.0 + MARGIN, result
    assert result.reason.startswith("timeout after 1.0s"), result
