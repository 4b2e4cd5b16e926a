"""The compute port: what hastack reads from and does to Nova (and Placement).

Drivers: ``hastack.drivers.openstack.compute`` (openstacksdk, against any cloud in clouds.yaml,
including the HTTP simulator) and ``hastack.sim.drivers`` (the in-process simulator in virtual
time).  One conformance suite (tests/contract/test_compute_port.py) runs over both.

Contract for every driver:

- Reads return plain frozen data (no SDK objects); times are seconds since the epoch on the
  cloud's clock (``updated_at``), never parsed by the caller.
- Bulk reads (``services``, and the destinations of ``workload``) are one paginated pass over
  the cloud, sized for 10,000 hosts: drivers must not build one SDK object per row.
- Errors from the cloud are translated: :class:`~hastack.errors.TransientError` for what may
  succeed when retried (5xx, timeouts, connection errors), :class:`~hastack.errors.PermanentError`
  for refusals (4xx) with Nova's message in the text.  Nothing else escapes.
- Actions are idempotent where Nova allows it: forcing down a host that is already forced down,
  or enabling an enabled one, succeeds.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Protocol

from hastack.domain.instances import HostCapacity, InstanceInfo, ServerGroupInfo


@dataclasses.dataclass(frozen=True)
class ComputeService:
    """One nova-compute service as ``GET /os-services`` reports it."""

    host: str
    up: bool  # Nova's ``state == "up"`` (always False while forced down)
    updated_at: float | None  # the last heartbeat Nova stored, None when never
    forced_down: bool
    enabled: bool
    disabled_reason: str = ""
    zone: str = ""


class EvacuationPhase(enum.StrEnum):
    NONE = "none"  # no evacuation of this instance from this source is known to Nova
    RUNNING = "running"  # migration accepted / pre-migrating, or the server still rebuilding
    DONE = "done"  # migration done or completed AND the server's host is the destination
    FAILED = "failed"  # migration error / failed, or the server went to ERROR rebuilding


@dataclasses.dataclass(frozen=True)
class EvacuationStatus:
    """What Nova says about one instance's evacuation from ``source``.

    ``DONE`` is proof the instance moved: the migration record says so *and* the server's host
    is no longer the source (real Nova shows the server ACTIVE on the failed host for a moment
    before its host changes, so ACTIVE alone proves nothing).
    """

    instance: str
    phase: EvacuationPhase
    host: str | None  # the server's current host
    status: str  # the server's status: ACTIVE, SHUTOFF, ERROR, REBUILD, ... ("" if gone)
    task_state: str | None
    migration_status: str | None  # the newest evacuation migration's status, if any
    destination: str | None  # that migration's dest_compute
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Workload:
    """Everything the evacuation planner needs about one failed host and its possible
    destinations, read in one go when a recovery reaches its planning step."""

    host: str
    instances: tuple[InstanceInfo, ...]  # what Nova lists on ``host`` (all projects)
    destinations: tuple[HostCapacity, ...]  # every other compute host, with free capacity
    groups: Mapping[str, ServerGroupInfo]  # the server groups of ``instances``, by id
    instance_hosts: Mapping[str, str]  # host of every member of those groups
    host_aggregates: Mapping[str, frozenset[str]]  # host -> names of its aggregates


class ComputePort(Protocol):
    def services(self) -> list[ComputeService]:
        """Every nova-compute service (one paginated pass; control services are left out)."""
        ...

    def workload(self, host: str) -> Workload:
        """The planner's input for ``host``'s evacuation (see :class:`Workload`)."""
        ...

    def force_down(self, host: str, reason: str) -> None:
        """Mark ``host``'s compute service forced down (microversion 2.53) and disabled with
        ``reason``, so that Nova accepts evacuations off it at once.  Only after fence proof."""
        ...

    def enable(self, host: str) -> None:
        """Rejoin: unset forced-down and enable the service.  Nova refuses (PermanentError)
        while evacuations from ``host`` are not yet cleaned up by its restarted compute."""
        ...

    def reset_state(self, instance: str, state: str) -> None:
        """``os-resetState`` to ``active`` or ``error``."""
        ...

    def evacuate(self, instance: str, target: str | None) -> None:
        """Ask Nova to evacuate ``instance`` to ``target`` (None: Nova's scheduler chooses).
        Returns once Nova accepted it; the rebuild runs asynchronously.  The driver picks the
        microversion (configurable); from 2.95 Nova leaves the rebuilt server SHUTOFF, which
        :meth:`evacuation_status` shows and the engine corrects with :meth:`start`."""
        ...

    def evacuation_status(self, instance: str, source: str) -> EvacuationStatus:
        """The instance's evacuation from ``source``, from its newest evacuation migration
        from ``source`` and its server, by the rules of :func:`evacuation_status`.  A server
        that no longer exists is phase NONE with status "" (not an error)."""
        ...

    def evacuation_statuses(
        self, source: str, instances: Sequence[str]
    ) -> dict[str, EvacuationStatus]:
        """:meth:`evacuation_status` for many instances of one source, in a few calls (one
        migration list, then the servers of the destinations whose migrations finished): what
        the engine polls while hundreds of evacuations are in flight.  Same phase rules; while a
        migration is still running or has failed, the phase comes from the migration alone and
        the server fields may be empty."""
        ...

    def start(self, instance: str) -> None:
        """Power on a SHUTOFF instance (used when Nova left an evacuated ACTIVE one SHUTOFF).
        Idempotent: Nova's 409 for a server already ACTIVE (no task) counts as success."""
        ...

    def evacuations_pending_cleanup(self, host: str) -> Sequence[str]:
        """Instances evacuated away from ``host`` that its restarted compute has not cleaned up
        yet: evacuation migrations from ``host`` still ``accepted``, ``pre-migrating`` or
        ``done`` (:data:`PENDING_CLEANUP`, the set nova-compute's start-up cleanup acts on),
        oldest first.  Nova refuses :meth:`enable` while any of them is ``done``; an empty
        list after the host's compute restarted means rejoining is safe."""
        ...


# Evacuation migration states a restarted source nova-compute treats as "evacuated away from
# me" and cleans up (nova/compute/manager.py ``_destroy_evacuated_instances``); ``done`` ones
# also make Nova refuse to lift forced_down (nova/api/openstack/compute/services.py).
PENDING_CLEANUP = ("accepted", "pre-migrating", "done")


def evacuation_status(
    instance: str,
    source: str,
    *,
    server_status: str | None,
    host: str | None,
    task_state: str | None,
    migration_status: str | None,
    destination: str | None,
) -> EvacuationStatus:
    """The phase rules every driver applies, over what Nova shows: the server
    (``server_status`` None when it no longer exists) and its newest evacuation migration
    from ``source`` (``migration_status`` None when there is none).

    A server that is gone is NONE (nothing left to wait for), whatever its migrations say.
    A migration ``done``/``completed`` is DONE only once the server's host is no longer the
    source and its task is finished; until then it is RUNNING, with a detail saying why.
    """
    if server_status is None:
        phase, detail = EvacuationPhase.NONE, "the server no longer exists"
    elif migration_status is None:
        phase, detail = EvacuationPhase.NONE, ""
    elif migration_status in ("failed", "error"):
        phase, detail = EvacuationPhase.FAILED, f"migration {migration_status}"
    elif migration_status in ("done", "completed") and host != source and task_state is None:
        phase, detail = EvacuationPhase.DONE, ""
    elif server_status == "ERROR" and task_state is None:
        phase, detail = EvacuationPhase.FAILED, "the server went to ERROR while rebuilding"
    else:
        phase, detail = EvacuationPhase.RUNNING, ""
        if host == source and task_state is None:
            detail = f"server {server_status} but still on {source}"
    return EvacuationStatus(
        instance=instance,
        phase=phase,
        host=host,
        status=server_status or "",
        task_state=task_state,
        migration_status=migration_status,
        destination=destination,
        detail=detail,
    )
