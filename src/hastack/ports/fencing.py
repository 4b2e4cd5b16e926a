"""The fencing port: a device that can read and switch a host's power, and prove it.

The core never trusts a power request on its own: recovery may only follow a :class:`FenceResult`
with ``ok=True`` for ``off``, which a device returns only after a status read-back said OFF.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class PowerState(enum.StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FenceResult:
    """The outcome of one fence operation, as shown in verdicts and the audit trail.

    ``device`` is the device's display name (never a secret); ``action`` is ``"status"``,
    ``"off"`` or ``"on"``; ``power`` is what the device last confirmed (``UNKNOWN`` when it did
    not answer); ``ok`` means, for ``status``, that the read succeeded and, for ``off``/``on``,
    that the target state was CONFIRMED by a status read-back; ``reason`` is one human-readable
    line ("power off confirmed", "timeout after 5.0s: no answer", "BMC busy (0xC0)",
    "authentication failed"); ``elapsed`` is in seconds.
    """

    device: str
    action: str
    power: PowerState
    ok: bool
    reason: str
    elapsed: float


class FenceDevice(Protocol):
    """One way to switch one host's power (an IPMI BMC, a Redfish system, a fence agent, ...).

    Every method:

    - never raises for device, network or authentication problems: it returns ``ok=False``
      with the reason;
    - returns within ``timeout`` seconds plus a small margin (under 1 s), even when the device
      never answers;
    - never lets a secret reach ``name``, a result, a log line, an exception or a process's
      arguments.

    ``off``/``on`` return ``ok=True`` only when a status read-back (polled within the timeout)
    confirms the target state; a host already in the target state is ``ok=True`` ("already
    off").  Calls for one device are not meant to run concurrently: the caller serializes them.
    """

    name: str

    def status(self, timeout: float) -> FenceResult: ...

    def off(self, timeout: float) -> FenceResult: ...

    def on(self, timeout: float) -> FenceResult: ...
