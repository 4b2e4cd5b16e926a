"""The port between the simulated BMCs and whatever owns the truth about the hosts.

The wire servers (:mod:`hastack.sim.bmc.ipmi`, :mod:`hastack.sim.bmc.redfish`) never keep power
state themselves: every request asks a :class:`BmcBackend`.  The simulated world implements the
port; :class:`InMemoryBmcBackend` is a plain in-memory implementation for tests and for running
the BMC farm on its own.

Backend methods are called from the IPMI event-loop thread and from Redfish request threads, so
they must be thread-safe and quick (a slow backend stalls every IPMI BMC of the farm).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable
from typing import Protocol


class BmcCondition(enum.StrEnum):
    """How a BMC behaves on the wire (the BMC's health, not the host's)."""

    OK = "ok"  # answers normally
    DEAD = "dead"  # no answer at all: IPMI packets dropped; Redfish connection closed at once
    HUNG = (
        "hung"  # IPMI: no answer; Redfish: connection accepted, no response until client gives up
    )
    BUSY = "busy"  # IPMI: chassis commands answer 0xC0 (node busy); Redfish: 503 with Retry-After
    SLOW = "slow"  # answers correctly after a delay (the backend says how long)


class PowerAction(enum.StrEnum):
    """A chassis power request, as both IPMI and Redfish can express it."""

    ON = "on"
    OFF = "off"
    CYCLE = "cycle"
    RESET = "reset"
    SOFT = "soft"  # graceful shutdown request (ACPI power button)


class BmcBackend(Protocol):
    def bmc_condition(self, host: str) -> BmcCondition: ...

    def bmc_delay(self, host: str) -> float: ...  # seconds to wait before answering when SLOW

    def power_is_on(self, host: str) -> bool: ...

    def set_power(self, host: str, action: PowerAction) -> None: ...


class InMemoryBmcBackend:
    """A plain in-memory implementation of the :class:`BmcBackend` port.

    Thread-safe (one lock around a few dicts).  Power actions take effect at once: ``SOFT``
    turns the host off, ``CYCLE``/``RESET`` end with it on (as the world does).  Tests and the
    CLI (when no simulated world is attached) use it; it records every action for assertions.
    """

    def __init__(self, hosts: Iterable[str] = (), *, power_on: bool = True) -> None:
        self._lock = threading.Lock()
        self._power: dict[str, bool] = dict.fromkeys(hosts, power_on)
        self._condition: dict[str, BmcCondition] = {}
        self._delay: dict[str, float] = {}
        self._actions: list[tuple[str, PowerAction]] = []

    def add_host(self, host: str, *, power_on: bool = True) -> None:
        with self._lock:
            self._power[host] = power_on

    def set_condition(self, host: str, condition: BmcCondition, delay: float = 0.0) -> None:
        with self._lock:
            self._require(host)
            self._condition[host] = condition
            self._delay[host] = delay

    def set_power_state(self, host: str, on: bool) -> None:
        """Change the truth directly (as if someone pressed the button), not via a BMC."""
        with self._lock:
            self._require(host)
            self._power[host] = on

    def actions(self) -> list[tuple[str, PowerAction]]:
        with self._lock:
            return list(self._actions)

    # -- the port

    def bmc_condition(self, host: str) -> BmcCondition:
        with self._lock:
            self._require(host)
            return self._condition.get(host, BmcCondition.OK)

    def bmc_delay(self, host: str) -> float:
        with self._lock:
            self._require(host)
            return self._delay.get(host, 0.0)

    def power_is_on(self, host: str) -> bool:
        with self._lock:
            self._require(host)
            return self._power[host]

    def set_power(self, host: str, action: PowerAction) -> None:
        with self._lock:
            self._require(host)
            self._actions.append((host, action))
            if action in (PowerAction.OFF, PowerAction.SOFT):
                self._power[host] = False
            elif action in (PowerAction.ON, PowerAction.CYCLE, PowerAction.RESET):
                self._power[host] = True

    def _require(self, host: str) -> None:
        if host not in self._power:
            raise KeyError(f"unknown host {host!r}")
