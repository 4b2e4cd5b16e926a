"""Simulated BMCs on the wire, driven by real outside clients.

Every test starts a :class:`BmcFarm` on 127.0.0.1 (free ports) over an
:class:`InMemoryBmcBackend` and talks to it with what a real deployment would use: Debian's
``ipmitool``, ``fence_ipmilan`` and ``fence_redfish`` as subprocesses, and the pyghmi and sushy
libraries in-process.  A test needing a missing Debian binary is skipped, saying which.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sushy
import sushy.auth
from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi import command as pyghmi_command

from hastack.sim.bmc import (
    BmcCondition,
    BmcEndpoint,
    BmcFarm,
    InMemoryBmcBackend,
    PowerAction,
)
from hastack.sim.bmc import ipmi as sim_ipmi

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

HOSTS = ("node-0", "node-1", "node-2")
CREDENTIALS = {h: (f"admin{i}", f"secret-{i}") for i, h in enumerate(HOSTS)}
UNREACHABLE = (BmcCondition.DEAD, BmcCondition.HUNG)

# -- fixtures and client helpers


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bmc-cert")


@pytest.fixture
def backend() -> InMemoryBmcBackend:
    return InMemoryBmcBackend(HOSTS)


@pytest.fixture
def farm(backend: InMemoryBmcBackend, cert_dir: Path) -> Iterator[BmcFarm]:
    endpoints = [BmcEndpoint(h, *CREDENTIALS[h], ipmi_port=0) for h in HOSTS]
    with BmcFarm(backend, endpoints, redfish_port=0, cert_dir=cert_dir) as f:
        yield f


def binary(name: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        package = "ipmitool" if name == "ipmitool" else "fence-agents"
        pytest.skip(f"{name} is not installed (Debian package {package})")
    return path


def run(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def ipmitool_at(port: int, user: str, password: str, *args: str) -> list[str]:
    login = ["-p", str(port), "-U", user, "-P", password]
    return [binary("ipmitool"), "-I", "lanplus", "-H", "127.0.0.1", *login, *args]


def ipmitool(
    farm: BmcFarm, host: str, *args: str, user: str | None = None, password: str | None = None
) -> list[str]:
    name, secret = CREDENTIALS[host]
    return ipmitool_at(farm.ipmi_port(host), user or name, password or secret, *args)


def fence_ipmilan(farm: BmcFarm, host: str, *args: str, password: str | None = None) -> list[str]:
    user, secret = CREDENTIALS[host]
    login = ["-u", str(farm.ipmi_port(host)), "-l", user, "-p", password or secret]
    return [binary("fence_ipmilan"), "-a", "127.0.0.1", *login, "-P", "--power-wait=0", *args]


def fence_redfish(
    farm: BmcFarm, host: str, *args: str, password: str | None = None, uri: bool = True
) -> list[str]:
    user, secret = CREDENTIALS[host]
    login = ["--ipport", str(farm.redfish_port), "-l", user, "-p", password or secret]
    systems = ["--systems-uri", farm.systems_uri(host)] if uri else []
    tls = ["--ssl-insecure", "--power-wait=0"]
    return [binary("fence_redfish"), "--ip", "127.0.0.1", *login, *tls, *systems, *args]


def pyghmi(farm: BmcFarm, host: str, password: str | None = None) -> pyghmi_command.Command:
    user, secret = CREDENTIALS[host]
    return pyghmi_command.Command("127.0.0.1", user, password or secret, port=farm.ipmi_port(host))


@pytest.fixture
def sushy_client(farm: BmcFarm) -> Iterator[Callable[..., sushy.Sushy]]:
    """Connect sushy clients; their Redfish sessions are closed before the farm stops.

    Left to ``Sushy.__del__``, the session DELETE runs on whichever thread the garbage collector
    interrupts, possibly a farm thread holding a lock (a logging handler's) that serving the
    DELETE needs: a deadlock until the client's read timeout.
    """
    auths: list[sushy.auth.SessionOrBasicAuth] = []

    def connect(host: str, password: str | None = None, **kw: float) -> sushy.Sushy:
        user, secret = CREDENTIALS[host]
        auths.append(sushy.auth.SessionOrBasicAuth(username=user, password=password or secret))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sushy.Sushy(
                farm.redfish_url,
                auth=auths[-1],
                verify=False,
                server_side_retries=1,
                server_side_retries_delay=0.01,
                **kw,
            )

    yield connect
    for auth in auths:
        with contextlib.suppress(sushy.exceptions.SushyError):
            auth.close()


def redfish_get(
    farm: BmcFarm, path: str, host: str | None = None, **kw: object
) -> requests.Response:
    auth = CREDENTIALS[host] if host else None
    return requests.get(farm.redfish_url + path, auth=auth, verify=False, timeout=5, **kw)


# -- IPMI: ipmitool


@pytest.mark.parametrize("suite", [None, "17", "3"], ids=["auto", "suite17", "suite3"])
def test_ipmitool_reads_and_changes_power(
    farm: BmcFarm, backend: InMemoryBmcBackend, suite: str | None
) -> None:
    cipher = ["-C", suite] if suite else []
    status = run(ipmitool(farm, "node-0", *cipher, "power", "status"))
    assert (status.returncode, status.stdout.strip()) == (0, "Chassis Power is on")
    off = run(ipmitool(farm, "node-0", *cipher, "power", "off"))
    assert off.returncode == 0, off.stderr
    assert not backend.power_is_on("node-0")
    assert (
        run(ipmitool(farm, "node-0", *cipher, "power", "status")).stdout.strip()
        == "Chassis Power is off"
    )
    assert run(ipmitool(farm, "node-0", *cipher, "power", "on")).returncode == 0
    assert backend.power_is_on("node-0")
    assert backend.power_is_on("node-1") and backend.actions() == [
        ("node-0", PowerAction.OFF),
        ("node-0", PowerAction.ON),
    ]


def test_ipmitool_soft_cycle_and_reset_reach_the_backend(
    farm: BmcFarm, backend: InMemoryBmcBackend
) -> None:
    for verb in ("soft", "on", "cycle", "reset"):
        assert run(ipmitool(farm, "node-1", "power", verb)).returncode == 0
    assert [a for _, a in backend.actions()] == [
        PowerAction.SOFT,
        PowerAction.ON,
        PowerAction.CYCLE,
        PowerAction.RESET,
    ]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        ([], "wrong", "Unable to establish IPMI v2"),
        (["-C", "1"], None, "no matching cipher suite"),
    ],
    ids=["wrong-password", "unsupported-cipher-suite"],
)
def test_ipmitool_fails_to_log_in(
    farm: BmcFarm, args: list[str], password: str | None, message: str
) -> None:
    started = time.monotonic()
    result = run(ipmitool(farm, "node-0", *args, "power", "status", password=password))
    assert result.returncode == 1 and message in result.stdout + result.stderr
    assert time.monotonic() - started < 2  # answered (an auth failure), not timed out


def test_unknown_user_is_refused_at_once(farm: BmcFarm) -> None:
    started = time.monotonic()
    result = run(ipmitool(farm, "node-0", "power", "status", user="nobody"))
    assert result.returncode == 1 and "Unable to establish" in result.stderr
    with pytest.raises(pyghmi_exc.IpmiException, match="Unauthorized name"):
        pyghmi_command.Command("127.0.0.1", "nobody", "x", port=farm.ipmi_port("node-0"))
    assert time.monotonic() - started < 3  # RAKP2 status 0x0D, not a timeout


def test_ipmitool_busy_bmc_answers_node_busy(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    backend.set_condition("node-0", BmcCondition.BUSY)
    result = run(ipmitool(farm, "node-0", "power", "off"))
    assert result.returncode == 1 and "Node busy" in result.stderr
    assert backend.power_is_on("node-0")
    assert run(ipmitool(farm, "node-0", "mc", "info")).returncode == 0  # only chassis is busy


@pytest.mark.parametrize("condition", UNREACHABLE)
def test_ipmitool_times_out_on_a_silent_bmc(
    farm: BmcFarm, backend: InMemoryBmcBackend, condition: BmcCondition
) -> None:
    backend.set_condition("node-0", condition)
    started = time.monotonic()
    result = run(ipmitool(farm, "node-0", "-N", "1", "-R", "1", "power", "status"))
    assert result.returncode == 1 and "Unable to establish" in result.stderr
    assert 1 <= time.monotonic() - started < 10
    assert run(ipmitool(farm, "node-1", "power", "status")).returncode == 0  # others answer


def test_slow_bmc_answers_late_without_holding_up_the_others(
    farm: BmcFarm, backend: InMemoryBmcBackend
) -> None:
    backend.set_condition("node-0", BmcCondition.SLOW, delay=0.4)
    started = time.monotonic()
    slow = subprocess.Popen(
        ipmitool(farm, "node-0", "power", "status"), stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.1)
        fast = run(ipmitool(farm, "node-1", "power", "status"))
        assert fast.returncode == 0 and slow.poll() is None  # answered while node-0 still thinks
        out, _ = slow.communicate(timeout=20)
    finally:
        slow.kill()
    assert (slow.returncode, out.strip()) == (0, "Chassis Power is on")
    assert time.monotonic() - started >= 0.4


# -- IPMI: fence_ipmilan


def test_fence_ipmilan_status_off_on_reboot(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    status = run(fence_ipmilan(farm, "node-0", "-o", "status"))
    assert (status.returncode, status.stdout.strip()) == (0, "Status: ON")
    assert run(fence_ipmilan(farm, "node-0", "-o", "off")).returncode == 0
    assert not backend.power_is_on("node-0")
    status = run(fence_ipmilan(farm, "node-0", "-o", "status"))
    assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF")
    assert run(fence_ipmilan(farm, "node-0", "-o", "on")).returncode == 0
    assert backend.power_is_on("node-0")
    assert run(fence_ipmilan(farm, "node-0", "-o", "reboot")).returncode == 0
    assert [a for _, a in backend.actions()] == [
        PowerAction.OFF,
        PowerAction.ON,
        PowerAction.OFF,
        PowerAction.ON,
    ]


@pytest.mark.parametrize(
    "condition",
    [None, BmcCondition.BUSY, *UNREACHABLE],
    ids=["wrong-password", "busy", "dead", "hung"],
)
def test_fence_ipmilan_fails(
    farm: BmcFarm, backend: InMemoryBmcBackend, condition: BmcCondition | None
) -> None:
    if condition:
        backend.set_condition("node-0", condition)
    password = "wrong" if condition is None else None
    started = time.monotonic()
    result = run(fence_ipmilan(farm, "node-0", "-o", "off", "--power-timeout=2", password=password))
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 10
    assert backend.power_is_on("node-0") and backend.actions() == []


def test_fence_ipmilan_slow_bmc_still_fences(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    backend.set_condition("node-0", BmcCondition.SLOW, delay=0.2)
    assert run(fence_ipmilan(farm, "node-0", "-o", "off")).returncode == 0
    assert not backend.power_is_on("node-0")


# -- IPMI: pyghmi


def test_pyghmi_reads_and_changes_power(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    bmc = pyghmi(farm, "node-0")
    assert bmc.get_power() == {"powerstate": "on"}
    bmc.set_power("off")
    assert not backend.power_is_on("node-0")
    assert bmc.get_power() == {"powerstate": "off"}
    bmc.set_power("on")
    assert bmc.get_power() == {"powerstate": "on"} and backend.power_is_on("node-0")


def test_pyghmi_falls_back_to_suite_3(
    farm: BmcFarm, backend: InMemoryBmcBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sim_ipmi._SUITES, 17)  # pyghmi proposes 17, gets 0x11, retries with 3
    bmc = pyghmi(farm, "node-2")
    assert bmc.ipmi_session.currhashlen == 12  # HMAC-SHA1-96: suite 3
    bmc.set_power("off")
    assert not backend.power_is_on("node-2")


def test_pyghmi_wrong_password(farm: BmcFarm) -> None:
    with pytest.raises(pyghmi_exc.IpmiException, match="Incorrect password"):
        pyghmi(farm, "node-0", password="wrong")


def test_pyghmi_busy_and_slow(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    bmc = pyghmi(farm, "node-0")
    assert bmc.get_power() == {"powerstate": "on"}
    backend.set_condition("node-0", BmcCondition.BUSY)
    with pytest.raises(pyghmi_exc.IpmiException, match="Node Busy"):
        bmc.get_power()
    backend.set_condition("node-0", BmcCondition.SLOW, delay=0.3)
    started = time.monotonic()
    assert bmc.get_power() == {"powerstate": "on"}
    assert time.monotonic() - started >= 0.3


def test_pyghmi_times_out_on_a_dead_bmc(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    backend.set_condition("node-1", BmcCondition.DEAD)
    started = time.monotonic()
    with pytest.raises(pyghmi_exc.IpmiException):
        pyghmi(farm, "node-1")
    assert time.monotonic() - started < 15


# -- Redfish: fence_redfish


def test_fence_redfish_status_off_on(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    status = run(fence_redfish(farm, "node-0", "-o", "status"))
    assert (status.returncode, status.stdout.strip()) == (0, "Status: ON")
    assert run(fence_redfish(farm, "node-0", "-o", "off")).returncode == 0
    assert not backend.power_is_on("node-0")
    status = run(fence_redfish(farm, "node-0", "-o", "status"))
    assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF")
    assert run(fence_redfish(farm, "node-0", "-o", "on")).returncode == 0
    assert backend.power_is_on("node-0") and backend.power_is_on("node-1")


def test_fence_redfish_finds_the_system_its_credentials_open(
    farm: BmcFarm, backend: InMemoryBmcBackend
) -> None:
    assert run(fence_redfish(farm, "node-1", "-o", "off", uri=False)).returncode == 0
    assert backend.actions() == [("node-1", PowerAction.OFF)]


@pytest.mark.parametrize(
    "condition",
    [None, BmcCondition.BUSY, BmcCondition.DEAD],
    ids=["wrong-password", "busy", "dead"],
)
def test_fence_redfish_fails(
    farm: BmcFarm, backend: InMemoryBmcBackend, condition: BmcCondition | None
) -> None:
    if condition:
        backend.set_condition("node-0", condition)
    password = "wrong" if condition is None else None
    for action in ("status", "off"):
        result = run(fence_redfish(farm, "node-0", "-o", action, password=password))
        assert result.returncode == 1, result.stdout + result.stderr
    assert backend.power_is_on("node-0") and backend.actions() == []


def test_fence_redfish_hangs_on_a_hung_bmc(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    backend.set_condition("node-0", BmcCondition.HUNG)
    with pytest.raises(subprocess.TimeoutExpired):  # fence_redfish sets no HTTP timeout
        run(fence_redfish(farm, "node-0", "-o", "off"), timeout=3)
    assert backend.power_is_on("node-0")


def test_fence_redfish_slow_bmc_still_fences(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    backend.set_condition("node-0", BmcCondition.SLOW, delay=0.3)
    assert run(fence_redfish(farm, "node-0", "-o", "off")).returncode == 0
    assert not backend.power_is_on("node-0")


# -- Redfish: sushy


def test_sushy_reads_and_resets(
    sushy_client: Callable[..., sushy.Sushy], farm: BmcFarm, backend: InMemoryBmcBackend
) -> None:
    client = sushy_client("node-0")
    assert client._auth.get_session_key()  # sushy logged in with a Redfish session
    system = client.get_system(farm.systems_uri("node-0"))
    assert system.power_state == sushy.PowerState.ON
    assert system.get_allowed_reset_system_values() >= {
        sushy.ResetType.ON,
        sushy.ResetType.FORCE_OFF,
    }
    for reset in (
        sushy.ResetType.FORCE_OFF,
        sushy.ResetType.ON,
        sushy.ResetType.GRACEFUL_SHUTDOWN,
        sushy.ResetType.POWER_CYCLE,
    ):
        system.reset_system(reset)
    system.refresh()
    assert system.power_state == sushy.PowerState.ON
    assert [a for _, a in backend.actions()] == [
        PowerAction.OFF,
        PowerAction.ON,
        PowerAction.SOFT,
        PowerAction.CYCLE,
    ]
    assert [m.identity for m in client.get_manager_collection().get_members()] == ["node-0"]
    assert client.get_system().identity == "node-0"  # the only system these credentials open


def test_sushy_wrong_password(sushy_client: Callable[..., sushy.Sushy], farm: BmcFarm) -> None:
    client = sushy_client("node-0", password="wrong")  # falls back to Basic auth
    with pytest.raises(sushy.exceptions.AccessError):
        client.get_system(farm.systems_uri("node-0"))


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        (BmcCondition.BUSY, sushy.exceptions.ServerSideError),
        (BmcCondition.DEAD, sushy.exceptions.ConnectionError),
        (BmcCondition.HUNG, sushy.exceptions.ConnectionError),
    ],
)
def test_sushy_unhealthy_bmc(
    sushy_client: Callable[..., sushy.Sushy],
    farm: BmcFarm,
    backend: InMemoryBmcBackend,
    condition: BmcCondition,
    error: type[Exception],
) -> None:
    client = sushy_client("node-0", read_timeout=1)
    backend.set_condition("node-0", condition)
    started = time.monotonic()
    with pytest.raises(error):
        client.get_system(farm.systems_uri("node-0"))
    assert time.monotonic() - started < 10
    backend.set_condition("node-0", BmcCondition.SLOW, delay=0.3)
    assert client.get_system(farm.systems_uri("node-0")).power_state == sushy.PowerState.ON


# -- Redfish: the protocol details


def test_redfish_service_root_is_public(farm: BmcFarm) -> None:
    root = redfish_get(farm, "/redfish/v1/")
    assert root.status_code == 200
    links = {"Systems", "Managers", "SessionService", "RedfishVersion", "@odata.id"}
    assert links <= root.json().keys()
    assert redfish_get(farm, "/redfish/v1").json() == root.json()


def test_redfish_authentication_and_errors(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    node0 = farm.systems_uri("node-0")
    unauthenticated = redfish_get(farm, node0)
    assert unauthenticated.status_code == 401 and "WWW-Authenticate" in unauthenticated.headers
    assert redfish_get(farm, node0, host="node-1").status_code == 401  # another BMC's password
    assert redfish_get(farm, "/redfish/v1/Systems/nope", host="node-0").status_code == 404
    members = redfish_get(farm, "/redfish/v1/Systems", host="node-0").json()["Members"]
    assert members == [{"@odata.id": node0}]
    target = f"{farm.redfish_url}{node0}/Actions/ComputerSystem.Reset"
    post: dict[str, Any] = {"auth": CREDENTIALS["node-0"], "verify": False, "timeout": 5}
    for body in ("{not json", '{"ResetType": "Explode"}', "{}"):
        bad = requests.post(target, data=body, **post)
        assert bad.status_code == 400
        assert bad.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"].startswith("Base.")
    assert (
        redfish_get(farm, f"{node0}/Actions/ComputerSystem.Reset", host="node-0").status_code == 405
    )
    assert requests.post(target, json={"ResetType": "ForceOff"}, **post).status_code == 204
    assert backend.actions() == [("node-0", PowerAction.OFF)]
    backend.set_condition("node-0", BmcCondition.BUSY)
    busy = redfish_get(farm, node0, host="node-0")
    assert busy.status_code == 503 and busy.headers["Retry-After"]


def test_stop_releases_hung_redfish_connections(farm: BmcFarm, backend: InMemoryBmcBackend) -> None:
    backend.set_condition("node-0", BmcCondition.HUNG)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", farm.redfish_port)) as raw,
        context.wrap_socket(raw) as conn,
    ):
        conn.sendall(f"GET {farm.systems_uri('node-0')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.settimeout(0.5)
        with pytest.raises(TimeoutError):
            conn.recv(1)  # accepted, no answer
        started = time.monotonic()
        farm.stop()
        assert time.monotonic() - started < 3
        conn.settimeout(2)
        assert conn.recv(1) == b""  # closed without a response


# -- scale


@pytest.mark.slow
def test_a_thousand_bmcs_in_one_process(
    cert_dir: Path, record_property: pytest.RecordProperty
) -> None:
    hosts = [f"host-{i:04d}" for i in range(1000)]
    backend = InMemoryBmcBackend(hosts)
    endpoints = [BmcEndpoint(h, "admin", f"pw-{i}", ipmi_port=0) for i, h in enumerate(hosts)]
    farm = BmcFarm(backend, endpoints, redfish_port=0, cert_dir=cert_dir)
    rss_before, threads_before = _rss_mib(), threading.active_count()
    started = time.monotonic()
    farm.start()
    try:
        start_seconds, rss_delta = time.monotonic() - started, _rss_mib() - rss_before
        record_property("start_seconds", round(start_seconds, 3))
        record_property("rss_delta_mib", round(rss_delta, 1))
        print(f"1,000 BMCs: started in {start_seconds * 1000:.0f} ms, RSS +{rss_delta:.1f} MiB")
        assert start_seconds < 5
        assert threading.active_count() - threads_before == 3  # IPMI loop + 2 Redfish acceptors
        last = hosts[-1]
        cmd = ipmitool_at(farm.ipmi_port(last), "admin", "pw-999", "power", "off")
        assert run(cmd).returncode == 0 and not backend.power_is_on(last)
        system = requests.get(
            farm.redfish_url + farm.systems_uri(last),
            auth=("admin", "pw-999"),
            verify=False,
            timeout=5,
        )
        assert system.json()["PowerState"] == "Off"
    finally:
        farm.stop()
    assert threading.active_count() == threads_before


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
