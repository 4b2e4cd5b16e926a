"""The fence device factory: what it builds, and how it refuses a bad entry."""

from __future__ import annotations

from typing import Any

import pytest

from hastack.drivers.fencing.agent import FenceAgentFencer, find_agent
from hastack.drivers.fencing.factory import build_fence_device
from hastack.drivers.fencing.ipmi import IpmiFencer
from hastack.drivers.fencing.redfish import RedfishFencer

WHERE = "hosts.compute01.fencing[0].devices[0]"
SECRET = "s3cr3t-Pa55"

IPMI = {"type": "ipmi", "address": "10.0.0.7", "username": "admin", "password": SECRET}
REDFISH = {
    "type": "redfish",
    "address": "https://10.0.0.7:8443",
    "system": "/redfish/v1/Systems/compute01",
    "verify_tls": False,
    "username": "admin",
    "password": SECRET,
}
AGENT = {"type": "agent", "agent": "fence_ipmilan", "options": {"ip": "10.0.0.7"}}


def refusal(spec: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as raised:
        build_fence_device(spec, where=WHERE)
    message = str(raised.value)
    assert message.startswith(WHERE) and SECRET not in message
    return message


def test_builds_ipmi_with_the_default_port() -> None:
    device = build_fence_device(IPMI, where=WHERE)
    assert isinstance(device, IpmiFencer) and device.port == 623
    assert device.name == "ipmi 10.0.0.7:623" and SECRET not in repr(device)


def test_builds_redfish() -> None:
    device = build_fence_device(REDFISH, where=WHERE)
    assert isinstance(device, RedfishFencer) and not device.verify_tls
    assert device.name == "redfish https://10.0.0.7:8443/redfish/v1/Systems/compute01"
    no_system = build_fence_device({**REDFISH, "system": None}, where=WHERE)
    assert isinstance(no_system, RedfishFencer) and no_system.system is None


@pytest.mark.skipif(find_agent("fence_ipmilan") is None, reason="fence-agents not installed")
def test_builds_an_agent_whose_password_stays_off_argv() -> None:
    device = build_fence_device({**AGENT, "password": SECRET}, where=WHERE)
    assert isinstance(device, FenceAgentFencer) and device.name == "fence_ipmilan 10.0.0.7"
    assert device.argv() == [device.path] and SECRET in device.stdin_text("status")
    assert SECRET not in repr(device)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ipmi", ": must be a mapping"),
        ({"address": "x"}, ".type: None is not one of agent, ipmi, redfish"),
        ({"type": "pdu"}, ".type: 'pdu' is not one of"),
        ({**IPMI, "passwd": "x"}, ": unknown field(s) for type ipmi: passwd"),
        ({**IPMI, "address": ""}, ".address: must be a non-empty string"),
        ({k: v for k, v in IPMI.items() if k != "username"}, ".username: is required"),
        ({**IPMI, "port": 70000}, ".port: must be an integer from 1 to 65535"),
        ({**IPMI, "port": "623"}, ".port: must be an integer"),
        ({**IPMI, "port": True}, ".port: must be an integer"),
        ({**REDFISH, "address": "10.0.0.7"}, ".address: '10.0.0.7' is not an http(s)://"),
        ({**REDFISH, "address": "https://u:p@10.0.0.7"}, ".address: must not carry credentials"),
        ({**REDFISH, "system": "Systems/1"}, ".system: 'Systems/1' is not an absolute"),
        ({**REDFISH, "verify_tls": "no"}, ".verify_tls: must be true or false"),
        ({**AGENT, "agent": "ipmitool"}, ".agent: 'ipmitool' does not match"),
        ({**AGENT, "agent": "fence_no_such_agent"}, ".agent: fence_no_such_agent is not installed"),
        ({**AGENT, "options": ["ip"]}, ".options: must be a mapping"),
    ],
)
def test_refuses_a_bad_entry_naming_the_place_and_field(spec: Any, expected: str) -> None:
    assert expected in refusal(spec)


def test_a_bad_password_is_refused_without_showing_it() -> None:
    assert ".password: must be a non-empty string, not the value given" in refusal(
        {**IPMI, "password": 12345}
    )
    assert ".password: must not contain line breaks" in refusal(
        {**IPMI, "password": SECRET + "\nx"}
    )


@pytest.mark.skipif(find_agent("fence_ipmilan") is None, reason="fence-agents not installed")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"password": SECRET}, ".options.password: set by hastack"),
        ({"action": "reboot"}, ".options.action: set by hastack"),
        ({"Bad Name": 1}, ".options: 'Bad Name' is not a fence agent option name"),
        ({"ip": ["a"]}, ".options.ip: must be a string, an integer or a boolean"),
        ({"ip": "10.0.0.7\naction=reboot"}, ".options.ip: must not contain line breaks"),
    ],
)
def test_refuses_bad_agent_options(options: dict[str, Any], expected: str) -> None:
    message = refusal({**AGENT, "options": options})
    assert expected in message
