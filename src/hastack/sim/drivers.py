"""In-process drivers over the simulated :class:`~hastack.sim.world.World`, for virtual time.

:class:`SimCompute` implements the compute port with the same World methods and server
functions the HTTP face calls (``hastack.sim.servers``, ``World.update_service``,
``World.service_updated_at``, ``capacity.free``), so the two faces cannot disagree.  Calls are
synchronous; Nova's asynchronous work (boots, evacuation phases) runs as events on the world's
clock, so a scenario test advances a :class:`~hastack.clock.VirtualClock` instead of sleeping.

Faults: the simulator's :class:`~hastack.sim.faults.ApiFaults` only act on the HTTP face.  Here
a ``faults`` hook takes their place: ``faults(operation)`` is called at the start of every port
call with the method's name (``"services"``, ``"workload"``, ``"force_down"``, ``"enable"``,
``"reset_state"``, ``"evacuate"``, ``"evacuation_status"``, ``"start"``,
``"evacuations_pending_cleanup"``) and may raise :class:`~hastack.errors.TransientError` (or
:class:`~hastack.errors.PermanentError`) to stand for a failed Nova API call; the call then has
no effect on the world.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from hastack.domain.instances import FlavorInfo, HostCapacity, InstanceInfo, ServerGroupInfo
from hastack.errors import PermanentError, TransientError
from hastack.ports.compute import (
    PENDING_CLEANUP,
    ComputeService,
    EvacuationStatus,
    Workload,
    evacuation_status,
)
from hastack.sim import capacity, servers
from hastack.sim.errors import CloudError, Conflict
from hastack.sim.model import Instance, VmState
from hastack.sim.world import World

Faults = Callable[[str], None]

_DEFAULT_EVACUATE_MV = (2, 94)  # what NovaCompute negotiates against the simulator


def _mv(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor)


@contextlib.contextmanager
def translated(service: str = "nova") -> Iterator[None]:
    """The simulator's API refusals as hastack errors, with the real service's message."""
    try:
        yield
    except CloudError as exc:
        if exc.status >= 500:
            raise TransientError(f"{service}: {exc.status} {exc.message}") from exc
        raise PermanentError(f"{service}: {exc.status} {exc.message}") from exc


class SimCompute:
    """:class:`~hastack.ports.compute.ComputePort` straight over a :class:`World` (as admin).

    ``evacuate_microversion`` plays the part it plays for ``NovaCompute``: from 2.95 an
    evacuated ACTIVE server ends SHUTOFF.  ``faults``: see the module docstring.
    """

    def __init__(
        self,
        world: World,
        *,
        evacuate_microversion: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.world = world
        self.faults = faults
        mv = _mv(evacuate_microversion) if evacuate_microversion else _DEFAULT_EVACUATE_MV
        self._target_state = VmState.STOPPED if mv >= (2, 95) else None

    def _enter(self, operation: str) -> None:
        if self.faults is not None:
            self.faults(operation)

    # ------------------------------------------------------------------ reads

    def services(self) -> list[ComputeService]:
        self._enter("services")
        w = self.world
        out = []
        with w.lock:
            for host in w.compute_hosts():
                svc = host.service
                updated = w.service_updated_at(host)
                out.append(
                    ComputeService(
                        host=host.name,
                        up=w.service_is_up(host, updated),
                        updated_at=updated,
                        forced_down=svc.forced_down,
                        enabled=svc.status == "enabled",
                        disabled_reason=svc.disabled_reason or "",
                        zone=host.az,
                    )
                )
        return out

    def workload(self, host: str) -> Workload:
        self._enter("workload")
        w = self.world
        with w.lock:
            insts = w.list_instances(host=host) if host in w.hosts else []
            on_host = {i.id for i in insts}
            groups = {
                g.id: ServerGroupInfo(id=g.id, policy=g.policy, members=frozenset(g.members))
                for g in w.server_groups.values()
                if on_host.intersection(g.members)
            }
            instance_hosts = {}
            for g in groups.values():
                for member in g.members:
                    peer = w.instances.get(member)
                    if peer is not None and peer.host and peer.vm_state != VmState.DELETED:
                        instance_hosts[member] = peer.host
            aggregates: dict[str, set[str]] = {}
            for agg in w.aggregates.values():
                for name in agg.hosts:
                    aggregates.setdefault(name, set()).add(agg.name)
            host_aggregates = {h: frozenset(n) for h, n in aggregates.items()}
            destinations = []
            for other in w.compute_hosts():
                if other.name == host:
                    continue
                free = capacity.free(other, w.usage[other.name])
                destinations.append(
                    HostCapacity(
                        host=other.name,
                        availability_zone=other.az,
                        aggregates=host_aggregates.get(other.name, frozenset()),
                        enabled=other.service.status == "enabled",
                        up=w.service_is_up(other),
                        free_vcpus=max(0, free.vcpus),
                        free_ram_mb=max(0, free.memory_mb),
                        free_disk_gb=max(0, free.disk_gb),
                    )
                )
            return Workload(
                host=host,
                instances=tuple(self._instance(i, groups) for i in insts),
                destinations=tuple(destinations),
                groups=groups,
                instance_hosts=instance_hosts,
                host_aggregates=host_aggregates,
            )

    def _instance(self, inst: Instance, groups: dict[str, ServerGroupInfo]) -> InstanceInfo:
        f = inst.flavor
        image = self.world.images.get(inst.image_id) if inst.image_id else None
        props = {str(k): str(v) for k, v in image.properties.items()} if image else {}
        return InstanceInfo(
            id=inst.id,
            name=inst.name,
            host=inst.host or "",
            project_id=inst.project_id,
            status=inst.status,
            task_state=inst.task_state,
            locked=inst.locked,
            flavor=FlavorInfo(
                name=f.name,
                vcpus=f.vcpus,
                ram_mb=f.ram,
                # Placement's DISK_GB for a local-disk instance (swap rounded up, as Nova does).
                disk_gb=f.disk + f.ephemeral + -(-f.swap // 1024),
                extra_specs=dict(f.extra_specs),
            ),
            metadata=dict(inst.metadata),
            image_properties=props,
            volume_backed=inst.volume_backed,
            server_groups=tuple(g for g in (inst.server_group,) if g in groups),
            availability_zone=inst.az,
            pinned_az=bool(inst.requested_az),
        )

    def evacuation_status(self, instance: str, source: str) -> EvacuationStatus:
        self._enter("evacuation_status")
        w = self.world
        with w.lock:
            inst = w.instances.get(instance)
            if inst is not None and inst.vm_state == VmState.DELETED:
                inst = None
            migs = [
                m
                for m in w.migrations.values()
                if m.instance_id == instance
                and m.migration_type == "evacuation"
                and m.source_compute == source
            ]
            newest = max(migs, key=lambda m: (m.created, m.id), default=None)
            return evacuation_status(
                instance,
                source,
                server_status=inst.status if inst is not None else None,
                host=inst.host if inst is not None else None,
                task_state=inst.task_state if inst is not None else None,
                migration_status=newest.status if newest else None,
                destination=newest.dest_compute if newest else None,
            )

    def evacuation_statuses(
        self, source: str, instances: Sequence[str]
    ) -> dict[str, EvacuationStatus]:
        return {i: self.evacuation_status(i, source) for i in instances}

    def evacuations_pending_cleanup(self, host: str) -> Sequence[str]:
        self._enter("evacuations_pending_cleanup")
        with self.world.lock:
            migs = sorted(self.world.migrations.values(), key=lambda m: (m.created, m.id))
            found = {
                m.instance_id: None
                for m in migs
                if m.source_compute == host
                and m.migration_type == "evacuation"
                and m.status in PENDING_CLEANUP
            }
        return list(found)

    # ------------------------------------------------------------------ actions

    def force_down(self, host: str, reason: str) -> None:
        self._enter("force_down")
        with translated():
            self.world.update_service(
                host, status="disabled", disabled_reason=reason[:255], forced_down=True
            )

    def enable(self, host: str) -> None:
        self._enter("enable")
        w = self.world
        with translated(), w.lock:
            w.host(host)
            # The check Nova's os-services API makes before lifting forced_down (the HTTP
            # face's HostResources._check_for_evacuations, same message).
            if any(
                m.source_compute == host and m.migration_type == "evacuation" and m.status == "done"
                for m in w.migrations.values()
            ):
                raise PermanentError(
                    f"nova: 400 Unable to force up host {host} as `done` evacuation migration "
                    "records remain associated with the host. Ensure the compute service has "
                    "been restarted, allowing these records to move to `completed` before "
                    "retrying this request."
                )
            w.update_service(host, status="enabled", forced_down=False)

    def reset_state(self, instance: str, state: str) -> None:
        self._enter("reset_state")
        with translated():
            servers.reset_state(self.world, instance, state)

    def start(self, instance: str) -> None:
        self._enter("start")
        with translated(), self.world.lock:
            try:
                servers.start_server(self.world, instance)
            except Conflict:
                inst = self.world.instance(instance)
                if inst.status != "ACTIVE" or inst.task_state is not None:
                    raise

    def evacuate(self, instance: str, target: str | None) -> None:
        self._enter("evacuate")
        with translated():
            servers.evacuate_server(
                self.world, instance, host=target, target_state=self._target_state
            )
