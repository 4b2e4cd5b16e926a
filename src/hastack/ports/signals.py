"""The signal port: independent witnesses of a host's health, one driver per kind.

Drivers: Nova heartbeats (from :meth:`ComputePort.services`), BMC power (from the fence
devices' ``status``), TCP probes from the controller, and the node agent's heartbeat (UDP,
:mod:`hastack.drivers.signals.agents`).

A source returns one :class:`~hastack.domain.hosts.Reading` per host it has an opinion on;
a host it could not read gets ``lost=None`` (no data), never ``lost=True``: silence from the
*source* is not evidence about the host.  ``read`` never raises; it returns within the source's
own timeout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Protocol

from hastack.domain.hosts import Reading, Signal


class SignalSource(Protocol):
    signal: Signal

    def read(self, hosts: Collection[str], now: float) -> Mapping[str, Reading]:
        """Readings for ``hosts`` (a source may skip hosts it does not cover)."""
        ...


@dataclasses.dataclass(frozen=True)
class Leadership:
    """What the engine says about this controller's lease right now, for the agent listener:
    only a controller holding it acknowledges agents as leader."""

    leader: bool
    epoch: int = -1
    since: float = 0.0  # when this controller took the lease (its clock)
