"""Fence device drivers: IPMI (pyghmi), Redfish (sushy) and any Debian ``fence_*`` agent.

Every driver only says how to open a :class:`PowerLink` to its device (read the power, request a
change) and how to translate its library's errors into a :class:`FenceFailure` with a
human-readable reason.  :class:`LinkFencer` holds the one flow they share, which is what the
fencing port promises: read, request, poll a read-back until the target state is confirmed,
all in a worker thread the caller waits for no longer than the timeout (plus a small grace),
so that a library that cannot be bounded never holds up the caller.

Drivers are imported from their modules (``hastack.drivers.fencing.ipmi``, ...) so that
importing this package pulls in neither pyghmi nor sushy.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from hastack.ports.fencing import FenceResult, PowerState

log = logging.getLogger(__name__)

Target = Literal["off", "on"]

GRACE = 0.5  # seconds the caller waits past the timeout for a library to report its own error
POLL_INTERVAL = 0.2  # seconds between read-backs while waiting for the target state


class FenceFailure(Exception):
    """A device problem, already translated into one line fit for a verdict.

    ``transient`` failures (a busy BMC) are retried while waiting for a read-back.
    """

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class Deadline:
    """A point in monotonic time; drivers size their library timeouts from it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


class PowerLink(Protocol):
    """An open connection to one device for the length of one operation."""

    def read(self) -> PowerState: ...

    def request(self, target: Target) -> None: ...


class _Outcome:
    """What the worker found so far; the caller reads it when the worker is done or late."""

    def __init__(self) -> None:
        self.power = PowerState.UNKNOWN
        self.step = "connecting"
        self.ok = False
        self.reason = ""
        self.done = threading.Event()

    def finish(self, ok: bool, reason: str) -> None:
        self.ok, self.reason = ok, reason
        self.done.set()


class LinkFencer(ABC):
    """A :class:`~hastack.ports.fencing.FenceDevice` built on :meth:`_connect`.

    Subclasses set ``name`` (a display name without secrets) and ``_secrets`` (strings to blank
    out of any reason, in case a library echoes one).
    """

    name: str
    _secrets: tuple[str, ...] = ()

    @abstractmethod
    def _connect(self, deadline: Deadline) -> AbstractContextManager[PowerLink]:
        """Open a link, raising :class:`FenceFailure` for device problems."""

    def status(self, timeout: float) -> FenceResult:
        return self._run("status", timeout)

    def off(self, timeout: float) -> FenceResult:
        return self._run("off", timeout)

    def on(self, timeout: float) -> FenceResult:
        return self._run("on", timeout)

    def _run(self, action: Literal["status", "off", "on"], timeout: float) -> FenceResult:
        started = time.monotonic()
        outcome = _Outcome()
        worker = threading.Thread(
            target=self._work,
            args=(action, Deadline(timeout), outcome),
            name=f"fence {self.name} {action}",
            daemon=True,  # a library stuck past the deadline must not keep the process alive
        )
        worker.start()
        limit = started + timeout + GRACE
        if outcome.done.wait(timeout + GRACE):
            ok, reason = outcome.ok, outcome.reason
            # Let the link close (an IPMI logout) before the next call can reuse its session.
            worker.join(max(0.0, limit - time.monotonic()))
        else:
            ok, reason = False, f"timeout after {timeout:.1f}s: no answer while {outcome.step}"
        result = FenceResult(
            device=self.name,
            action=action,
            power=outcome.power,
            ok=ok,
            reason=self._redact(reason),
            elapsed=time.monotonic() - started,
        )
        log.info(
            "fence %s %s: %s (%s, %.2fs)",
            result.device,
            action,
            "ok" if ok else "failed",
            result.reason,
            result.elapsed,
        )
        return result

    def _work(self, action: str, deadline: Deadline, outcome: _Outcome) -> None:
        try:
            with self._connect(deadline) as link:
                outcome.step = "reading power"
                outcome.power = link.read()
                if action == "status":
                    outcome.finish(True, f"power is {outcome.power}")
                    return
                target: Target = "off" if action == "off" else "on"
                if outcome.power == target:
                    outcome.finish(True, f"already {target}")
                    return
                outcome.step = f"requesting power {target}"
                link.request(target)
                outcome.step = f"waiting for power {target}"
                outcome.finish(*_confirm(link, target, deadline, outcome))
        except FenceFailure as failure:
            outcome.finish(False, failure.reason)
        except Exception as error:  # the contract: never raise for a device problem
            log.debug("fence %s %s: unexpected error", self.name, action, exc_info=True)
            outcome.finish(False, f"unexpected error: {type(error).__name__}: {error}")

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return " ".join(text.split())  # one line


def _confirm(
    link: PowerLink, target: Target, deadline: Deadline, outcome: _Outcome
) -> tuple[bool, str]:
    """Poll read-backs until ``target`` is confirmed or the deadline passes."""
    last_error = ""
    while True:
        try:
            outcome.power = link.read()
            last_error = ""
        except FenceFailure as failure:
            if not failure.transient:
                raise
            last_error = failure.reason
        if outcome.power == target:
            return True, f"power {target} confirmed"
        if deadline.remaining() <= POLL_INTERVAL:
            seen = last_error or f"power still {outcome.power}"
            return False, f"not confirmed within {deadline.seconds:.1f}s: {seen}"
        time.sleep(POLL_INTERVAL)
