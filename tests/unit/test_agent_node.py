"""The node agent's self-fence loop on its own clock: it feeds while a leader answers, stops
when cut off, and never starts again.  The watchdog here counts feeds (the real device and the
software watchdog are exercised by tests/functional/test_agent.py)."""

from __future__ import annotations

from hastack.agent.config import parse_agent_config
from hastack.agent.node import NodeAgent


class CountingWatchdog:
    def __init__(self) -> None:
        self.feeds = 0
        self.disarmed = False

    def feed(self) -> None:
        self.feeds += 1

    def disarm(self) -> None:
        self.disarmed = True


def test_once_it_stops_feeding_it_never_feeds_again() -> None:
    now = [100.0]
    config = parse_agent_config(
        {
            "host": "compute01",
            "controllers": ["127.0.0.1:9"],
            "listen": "127.0.0.1:0",
            "interval": 1.0,
            "self_fence": {"enabled": True, "after": 5.0, "watchdog": "soft"},
        }
    )
    dog = CountingWatchdog()
    agent = NodeAgent(config, b"k" * 16, watchdog=dog, monotonic=lambda: now[0])
    try:
        agent.last_contact = 100.0
        agent.guard()
        assert dog.feeds == 1 and agent.feeding
        now[0] = 106.0  # 6 s without a leader, no peers configured: cut off
        agent.guard()
        assert dog.feeds == 1 and not agent.feeding
        agent.last_contact = 106.0  # an ack arrives in the watchdog's last seconds
        agent.guard()
        assert dog.feeds == 1, "a self-fence, once begun, completes"
    finally:
        agent.stop()
    assert dog.disarmed  # a clean stop of the process; the node would be down already
