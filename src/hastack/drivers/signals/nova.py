"""The NOVA signal: nova-compute heartbeats, as the compute port lists them.

One :meth:`ComputePort.services` call per read covers every host.  When Nova cannot be read,
every host gets ``lost=None`` with the reason: an API outage says nothing about the hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from hastack.domain.hosts import Reading, Signal
from hastack.errors import HastackError
from hastack.policy.detection import DetectionProfile, nova_reading
from hastack.ports.compute import ComputeService

log = logging.getLogger(__name__)


class ServiceLister(Protocol):
    """The part of :class:`~hastack.ports.compute.ComputePort` this source needs."""

    def services(self) -> Sequence[ComputeService]: ...


class NovaHeartbeat:
    """The NOVA signal from ``compute.services()``: one API pass per read, never raises."""

    signal = Signal.NOVA

    def __init__(self, compute: ServiceLister, profile: DetectionProfile) -> None:
        self.compute = compute
        self.profile = profile

    def read(self, hosts: Collection[str], now: float) -> Mapping[str, Reading]:
        try:
            services = self.compute.services()
        except HastackError as exc:
            return self._no_data(hosts, now, f"Nova could not be read: {exc}")
        except Exception as exc:  # the port's contract: never raise
            log.exception("Nova heartbeat: unexpected failure listing services")
            return self._no_data(hosts, now, f"Nova could not be read: {type(exc).__name__}")
        by_host: dict[str, ComputeService] = {}
        for service in services:
            seen = by_host.get(service.host)
            if seen is None or _fresher(service, seen):
                by_host[service.host] = service
        readings: dict[str, Reading] = {}
        for host in hosts:
            found = by_host.get(host)
            if found is None:
                readings[host] = Reading(Signal.NOVA, None, now, "no nova-compute service")
            else:
                readings[host] = nova_reading(found.updated_at, found.up, now, self.profile)
        return readings

    @staticmethod
    def _no_data(hosts: Collection[str], now: float, detail: str) -> dict[str, Reading]:
        return {host: Reading(Signal.NOVA, None, now, detail) for host in hosts}


def _fresher(a: ComputeService, b: ComputeService) -> bool:
    """Of two services on one host (a renamed or re-registered one), the one that says more."""
    return (a.up, a.updated_at or 0.0) > (b.up, b.updated_at or 0.0)
