"""Fence devices over the in-process simulated world (virtual time).

:class:`SimBmc` implements the fencing port against :class:`~hastack.sim.world.World`'s BMC
backend directly, with the same outcomes the wire drivers report for each BMC condition (dead
and hung: a timeout; busy: refused; slow: answers).  Calls return at once: in virtual time a
timeout costs no clock time, which scenario tests must keep in mind when they reason about
durations.  The wire drivers are covered by tests/contract/test_fencing_conformance.py.
"""

from __future__ import annotations

from hastack.ports.fencing import FenceResult, PowerState
from hastack.sim.bmc.backend import BmcBackend, BmcCondition, PowerAction


class SimBmc:
    def __init__(
        self, backend: BmcBackend, host: str, *, kind: str = "ipmi", broken: str | None = None
    ) -> None:
        self.backend = backend
        self.host = host
        self.name = f"sim-{kind} {host}"
        self.broken = broken  # e.g. "authentication failed": a misconfigured device

    def _answer(self, action: str, timeout: float) -> FenceResult | None:
        if self.broken:
            return FenceResult(self.name, action, PowerState.UNKNOWN, False, self.broken, 0.0)
        condition = self.backend.bmc_condition(self.host)
        if condition in (BmcCondition.DEAD, BmcCondition.HUNG):
            return FenceResult(
                self.name,
                action,
                PowerState.UNKNOWN,
                False,
                f"timeout after {timeout:.1f}s: no answer",
                timeout,
            )
        if condition == BmcCondition.BUSY:
            return FenceResult(self.name, action, PowerState.UNKNOWN, False, "BMC busy (0xC0)", 0.0)
        return None

    def _power(self) -> PowerState:
        return PowerState.ON if self.backend.power_is_on(self.host) else PowerState.OFF

    def status(self, timeout: float) -> FenceResult:
        refused = self._answer("status", timeout)
        if refused is not None:
            return refused
        power = self._power()
        return FenceResult(self.name, "status", power, True, f"power {power}", 0.0)

    def off(self, timeout: float) -> FenceResult:
        return self._switch("off", PowerAction.OFF, PowerState.OFF, timeout)

    def on(self, timeout: float) -> FenceResult:
        return self._switch("on", PowerAction.ON, PowerState.ON, timeout)

    def _switch(
        self, action: str, request: PowerAction, target: PowerState, timeout: float
    ) -> FenceResult:
        refused = self._answer(action, timeout)
        if refused is not None:
            return refused
        if self._power() == target:
            return FenceResult(self.name, action, target, True, f"already {target}", 0.0)
        self.backend.set_power(self.host, request)
        power = self._power()
        if power == target:
            return FenceResult(self.name, action, power, True, f"power {target} confirmed", 0.0)
        return FenceResult(
            self.name, action, power, False, f"power still {power} after the request", 0.0
        )
