"""The node agent's wire format, its configuration, and the controller's listener, on real UDP
sockets on 127.0.0.1 (no agent process: see tests/functional/test_agent.py for those)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hastack.agent.config import parse_agent_config
from hastack.agent.protocol import BadMessage, decode, encode, load_key, parse_address
from hastack.clock import SystemClock
from hastack.config import parse_config
from hastack.drivers.signals.agents import AgentListener
from hastack.errors import ConfigError
from hastack.policy.detection import PROFILES
from hastack.ports.signals import Leadership

KEY = b"0123456789abcdef-key"


def hb(host: str = "c1", seq: int = 1, **extra: object) -> dict[str, object]:
    message: dict[str, object] = {"t": "hb", "host": host, "boot": "b1", "seq": seq}
    message.update(ts=time.time(), failed={}, contact=0.5)
    message.update(extra)
    return message


# ---------------------------------------------------------------- wire


def test_round_trip() -> None:
    message = hb(failed={"nova-compute": "inactive"})
    assert decode(KEY, encode(KEY, message)) == message


@pytest.mark.parametrize(
    ("datagram", "why"),
    [
        (b"hello", "not a hastack datagram"),
        (encode(b"another-key-0123456", hb()), "bad signature"),
        (encode(KEY, hb()).replace(b'"seq":1', b'"seq":2'), "bad signature"),
        (encode(KEY, {"t": "hb"}), "without a host"),
    ],
)
def test_bad_datagrams_are_refused(datagram: bytes, why: str) -> None:
    with pytest.raises(BadMessage, match=why):
        decode(KEY, datagram)


def test_addresses() -> None:
    assert parse_address("10.0.0.1", 7420) == ("10.0.0.1", 7420)
    assert parse_address("ctl1:7500", 7420) == ("ctl1", 7500)
    assert parse_address("[fd00::1]:7500", 7420) == ("fd00::1", 7500)
    for bad in ("ctl1:x", ":7500", "ctl1:70000"):
        with pytest.raises(ValueError, match=bad.split(":")[0] or "no host"):
            parse_address(bad, 7420)


def test_key_file_errors_never_show_the_key(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("secret")
    with pytest.raises(ValueError, match="at least 16 bytes") as info:
        load_key(short)
    assert "secret" not in str(info.value)
    with pytest.raises(ValueError, match="cannot read"):
        load_key(tmp_path / "missing")


def test_a_key_readable_by_others_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "agent.key"
    path.write_text(KEY.decode() + "\n")
    path.chmod(0o600)
    assert load_key(path) == KEY
    assert not caplog.records
    path.chmod(0o644)
    assert load_key(path) == KEY
    assert "readable by others" in caplog.text


# ---------------------------------------------------------------- configuration


def test_agent_config_errors_name_the_place() -> None:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(
            {
                "controllers": ["ctl1:bad"],
                "checks": [{"name": "x", "systemd": "a", "command": ["b"]}],
                "self_fence": {"enabled": True, "after": 1.0},
            }
        )
    text = str(info.value)
    assert "checks[0]: give exactly one of systemd" in text
    with pytest.raises(ConfigError, match="bad port"):
        parse_agent_config({"controllers": ["ctl1:bad"]})
    with pytest.raises(ConfigError, match="at least 3 heartbeat intervals"):
        parse_agent_config({"controllers": ["c"], "self_fence": {"enabled": True, "after": 2}})


def test_a_watchdog_level_must_be_last_alone_and_have_the_listener() -> None:
    ipmi = {"type": "ipmi", "address": "10.0.0.9", "username": "u", "password": "p"}
    raw = {
        "cloud": {"name": "c"},
        "hosts": {
            "c1": {"fencing": [{"devices": [{"type": "watchdog"}]}, {"devices": [ipmi]}]},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert "watchdog must be alone on the last level" in str(info.value)
    assert "needs agents.listen" in str(info.value)
    raw["agents"] = {"listen": "127.0.0.1:7420"}
    raw["hosts"] = {"c1": {"fencing": [{"devices": [ipmi]}, {"devices": [{"type": "watchdog"}]}]}}
    assert parse_config(raw).agents.listen == "127.0.0.1:7420"


# ---------------------------------------------------------------- the listener


@pytest.fixture
def listener() -> AgentListener:
    lead = Leadership(True, 7, 0.0)
    return AgentListener(
        ("127.0.0.1", 0),
        KEY,
        SystemClock(),
        PROFILES["fast"],
        name="ctl-1",
        leadership=lambda: lead,
    )


def test_a_heartbeat_is_acked_and_makes_the_signal_fresh(listener: AgentListener) -> None:
    now = time.time()
    ack = decode(KEY, listener.handle(encode(KEY, hb(failed={"libvirtd": "failed"})), now) or b"")
    assert ack == {
        "t": "ack", "host": "c1", "boot": "b1", "seq": 1, "ctl": "ctl-1", "leader": True, "epoch": 7
    }  # fmt: skip
    reading = listener.read(["c1", "c2"], now + 1)
    assert set(reading) == {"c1"}  # c2 has no agent: no data
    assert reading["c1"].lost is False
    assert "failing: libvirtd (failed)" in reading["c1"].detail
    stale = listener.read(["c1"], now + PROFILES["fast"].agent_stale_after + 0.5)["c1"]
    assert stale.lost is True


def test_replays_and_old_stamps_are_dropped(listener: AgentListener) -> None:
    now = time.time()
    listener.handle(encode(KEY, hb(seq=5)), now)
    with pytest.raises(BadMessage, match="already seen"):
        listener.handle(encode(KEY, hb(seq=5)), now + 1)
    with pytest.raises(BadMessage, match="replay window"):
        listener.handle(encode(KEY, hb(seq=6, ts=now - 3600)), now)
    restarted = hb(seq=1)
    restarted["boot"] = "b2"  # a new agent process counts from 1 again
    assert listener.handle(encode(KEY, restarted), now + 2) is not None


def test_a_follower_acks_but_not_as_leader(listener: AgentListener) -> None:
    listener.leadership = lambda: Leadership(False)
    ack = decode(KEY, listener.handle(encode(KEY, hb()), time.time()) or b"")
    assert ack["leader"] is False
    assert not listener.proof("c1", time.time(), margin=0).proven


def test_over_the_wire(listener: AgentListener) -> None:
    import socket  # noqa: PLC0415

    with listener, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"junk", listener.address)
        sock.sendto(encode(KEY, hb(host="c9")), listener.address)
        ack = decode(KEY, sock.recv(9000))
        assert ack["host"] == "c9" and ack["leader"] is True
    assert listener.stats.dropped == 1 and listener.stats.accepted == 1
