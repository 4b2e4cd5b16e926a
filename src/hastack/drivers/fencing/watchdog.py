"""The last fence level: "its lease expired and its watchdog period elapsed".

Not a power switch: :meth:`WatchdogFence.off` proves a host off only when the rule of
:mod:`hastack.policy.selffence` holds for it, read from the controller's
:class:`~hastack.drivers.signals.agents.AgentListener` (the host's agent runs with
``self_fence.enabled``).  It waits for the proof, up to ``max_wait`` seconds, re-checking every
half second, because waiting *is* the proof; it is the one device allowed to exceed the fence
timeout, and the configuration accepts it only alone, on a host's last level.

Unbound (built by the factory before the listener exists) it proves nothing;
``hastack.controller`` binds it to its host and the listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hastack.domain.fencing import WATCHDOG_DEVICE
from hastack.drivers.signals.agents import AgentListener
from hastack.ports.fencing import FenceResult, PowerState


class WatchdogFence:
    def __init__(
        self,
        *,
        margin: float = 5.0,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.margin = margin
        self.max_wait = max_wait
        self.name = "watchdog"
        self.host: str | None = None
        self.listener: AgentListener | None = None
        self._sleep = sleep

    def bind(self, host: str, listener: AgentListener | None) -> None:
        self.host = host
        self.listener = listener
        self.name = f"{WATCHDOG_DEVICE}{host}"

    def _result(self, action: str, ok: bool, reason: str, started: float) -> FenceResult:
        power = PowerState.OFF if ok else PowerState.UNKNOWN
        return FenceResult(self.name, action, power, ok, reason, time.monotonic() - started)

    def status(self, timeout: float) -> FenceResult:
        started = time.monotonic()
        if self.listener is None or self.host is None:
            return self._result("status", False, "no agent listener configured", started)
        proof = self.listener.proof(self.host, self.listener.clock.now(), margin=self.margin)
        return self._result("status", proof.proven, proof.reason, started)

    def off(self, timeout: float) -> FenceResult:
        started = time.monotonic()
        if self.listener is None or self.host is None:
            return self._result("off", False, "no agent listener configured", started)
        listener, clock = self.listener, self.listener.clock
        epoch = listener.leadership().epoch
        give_up = clock.now() + self.max_wait
        while True:
            now = clock.now()
            if listener.leadership().epoch != epoch:
                return self._result("off", False, "leadership changed while waiting", started)
            proof = listener.proof(self.host, now, margin=self.margin)
            if proof.proven:
                return self._result("off", True, f"watchdog proof: {proof.reason}", started)
            if proof.at is None or proof.at > give_up:
                return self._result("off", False, f"no watchdog proof: {proof.reason}", started)
            self._sleep(min(0.5, max(0.05, proof.at - now)))

    def on(self, timeout: float) -> FenceResult:
        return self._result("on", False, "a watchdog cannot power a host on", time.monotonic())
