"""The simulated cloud's single source of truth.

One :class:`World` holds physical truth (power, hangs, isolation, which hosts really run a VM) and
the API view (what Nova and Placement report), and applies the real services' rules to both:
heartbeats go stale when a host stops writing them, Nova refuses an evacuation while the source
service is up, evacuations are asynchronous and leave migration records, a restarted compute
service cleans up what was evacuated away from it.  Both faces of the simulator — in-process
drivers in virtual time and the HTTP face in real time — call these methods, so they cannot
disagree.

Every public method takes the world lock; scheduled callbacks (boots, evacuations) take it too.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from hastack.clock import Clock
from hastack.sim import capacity
from hastack.sim.bmc.backend import BmcCondition, PowerAction
from hastack.sim.errors import BadRequest, Conflict, NotFound
from hastack.sim.model import (
    Aggregate,
    Flavor,
    Host,
    Image,
    Instance,
    InstanceAction,
    Migration,
    ServerGroup,
    Service,
    VmState,
)
from hastack.sim.neutron import NeutronConfig, NeutronState

P = ParamSpec("P")
R = TypeVar("R")

EVACUABLE_STATES = (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR)
# Migration states a restarted source compute treats as "evacuated away from me"
# (nova/compute/manager.py, _destroy_evacuated_instances).
_EVACUATED_AWAY = ("accepted", "pre-migrating", "done")


@dataclasses.dataclass
class SimConfig:
    """Timing of the simulated cloud.  Defaults follow Nova's (report_interval 10 s,
    service_down_time 60 s); the operation durations are those of a small, healthy cloud."""

    report_interval: float = 10.0
    service_down_time: float = 60.0
    boot_seconds: float = 2.0
    evacuate_seconds: float = 3.0
    evacuate_jitter: float = 0.3  # fraction of evacuate_seconds, drawn per evacuation
    # Real Nova shows an evacuated server ACTIVE (task_state None) while its host still names the
    # failed source, for a moment before finish_evacuation moves it and marks the migration done.
    evacuate_stale_window: float = 0.5
    schedule_seconds: float = 0.1
    action_seconds: float = 0.3
    host_boot_seconds: float = 5.0
    # How long an RPC call to a compute that cannot answer waits before MessagingTimeout.
    rpc_response_timeout: float = 60.0
    graceful_shutdown_seconds: float = 2.0
    # Neutron's agent timing (report_interval, agent_down_time): see hastack.sim.neutron.
    neutron: NeutronConfig = dataclasses.field(default_factory=NeutronConfig)


def locked(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0].lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class World:
    """The cloud: hosts, services, instances, migrations, aggregates, flavors, images."""

    def __init__(self, clock: Clock, *, seed: int = 0, config: SimConfig | None = None) -> None:
        self.clock = clock
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.hosts: dict[str, Host] = {}
        self.instances: dict[str, Instance] = {}
        self.by_host: dict[str, dict[str, None]] = {}
        self.usage: dict[str, capacity.Usage] = {}
        self.flavors: dict[str, Flavor] = {}
        self.images: dict[str, Image] = {}
        self.migrations: dict[int, Migration] = {}
        self.actions: dict[str, list[InstanceAction]] = {}
        self.aggregates: dict[int, Aggregate] = {}
        self.server_groups: dict[str, ServerGroup] = {}
        self.projects: dict[str, str] = {}  # id -> name
        self.admin_project = ""
        self.admin_user = ""
        self.default_az = "nova"
        self._sorted_ids: list[str] | None = None
        self._positions: dict[str, int] = {}
        self._seq = 0
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        # nova-conductor and nova-scheduler on the controller: listed by os-services in zone
        # "internal", always up (the controller's own failures are not simulated here).
        self.control_services = [
            Service(id=self.new_uuid(), legacy_id=self.next_id(), host="controller", binary=b)
            for b in ("nova-conductor", "nova-scheduler")
        ]
        self.neutron = NeutronState(
            self, self.config.neutron
        )  # empty unless the spec has network nodes

    # ------------------------------------------------------------------ identities and events

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_id(self) -> int:
        self._seq += 1
        return self._seq

    def subscribe(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """``listener(kind, fields)`` is called, under the world lock, for every change of note."""
        self._listeners.append(listener)

    def emit(self, kind: str, **fields: Any) -> None:
        for listener in self._listeners:
            listener(kind, fields)

    # ------------------------------------------------------------------ building

    @locked
    def add_host(
        self,
        name: str,
        *,
        az: str | None = None,
        vcpus: int = 32,
        memory_mb: int = 131072,
        disk_gb: int = 1000,
        host_ip: str = "",
        bmc_username: str = "admin",
        bmc_password: str = "password",
        compute: bool = True,
    ) -> Host:
        now = self.clock.now()
        service = Service(
            id=self.new_uuid(),
            legacy_id=self.next_id(),
            host=name,
            last_report=now,
            phase=self.rng.uniform(0, self.config.report_interval),
            created=now,
        )
        service.alive_since = now
        host = Host(
            name=name,
            az=az or self.default_az,
            vcpus=vcpus,
            memory_mb=memory_mb,
            disk_gb=disk_gb,
            host_ip=host_ip or f"192.0.2.{len(self.hosts) % 250 + 1}",
            service=service,
            hypervisor_id=self.new_uuid(),
            hypervisor_legacy_id=service.legacy_id,
            booted_at=now,
            bmc_username=bmc_username,
            bmc_password=bmc_password,
            compute=compute,
            compute_running=compute,
        )
        self.hosts[name] = host
        self.by_host[name] = {}
        self.usage[name] = capacity.Usage()
        return host

    @locked
    def add_flavor(self, flavor: Flavor) -> Flavor:
        self.flavors[flavor.id] = flavor
        return flavor

    @locked
    def add_image(self, image: Image) -> Image:
        self.images[image.id] = image
        return image

    # ------------------------------------------------------------------ lookups

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise NotFound(f"Compute host {name} could not be found.") from None

    def compute_hosts(self) -> Iterator[Host]:
        """The hosts running nova-compute (every host but the network nodes)."""
        return (h for h in self.hosts.values() if h.compute)

    def instance(self, server_id: str) -> Instance:
        inst = self.instances.get(server_id)
        if inst is None or inst.vm_state == VmState.DELETED:
            raise NotFound(f"Instance {server_id} could not be found.")
        return inst

    def flavor(self, flavor_id: str) -> Flavor:
        try:
            return self.flavors[flavor_id]
        except KeyError:
            raise NotFound(f"Flavor {flavor_id} could not be found.") from None

    def image(self, image_id: str) -> Image:
        try:
            return self.images[image_id]
        except KeyError:
            raise NotFound(f"Image {image_id} could not be found.") from None

    def refresh_az(self, host: Host) -> None:
        """A host's availability zone is its aggregates' ``availability_zone``, else the default."""
        zones = [
            a.metadata["availability_zone"]
            for a in self.aggregates.values()
            if host.name in a.hosts and a.metadata.get("availability_zone")
        ]
        host.az = zones[0] if zones else self.default_az

    # ------------------------------------------------------------------ heartbeats and services

    def control_service_updated_at(self, svc: Service) -> float:
        interval = self.config.report_interval
        now = self.clock.now()
        return svc.phase + ((now - svc.phase) // interval) * interval

    def service_updated_at(self, host: Host) -> float:
        """When nova-compute on ``host`` last wrote its heartbeat (Nova's ``updated_at``)."""
        svc = host.service
        if not host.heartbeating:
            return svc.last_report
        interval = self.config.report_interval
        now = self.clock.now()
        tick = svc.phase + ((now - svc.phase) // interval) * interval
        return max(svc.last_report, tick) if tick >= svc.alive_since else svc.last_report

    def service_is_up(self, host: Host, updated_at: float | None = None) -> bool:
        """Nova's servicegroup DB driver: not forced down, heard from within service_down_time.
        ``updated_at`` may be passed when the caller has just computed it."""
        if host.service.forced_down:
            return False
        if updated_at is None:
            updated_at = self.service_updated_at(host)
        return self.clock.now() - updated_at <= self.config.service_down_time

    def set_physical(self, host: Host, **changes: Any) -> None:
        """Change a host's physical state, keeping its heartbeat record consistent."""
        was = host.heartbeating
        if was:
            host.service.last_report = self.service_updated_at(host)
        for key, value in changes.items():
            setattr(host, key, value)
        if not was and host.heartbeating:
            now = self.clock.now()
            host.service.last_report = now  # nova-compute reports as soon as it can again
            host.service.alive_since = now
        if was != host.heartbeating:
            self.emit("heartbeat", host=host.name, alive=host.heartbeating)

    @locked
    def update_service(
        self,
        host_name: str,
        *,
        status: str | None = None,
        disabled_reason: str | None = None,
        forced_down: bool | None = None,
    ) -> Service:
        host = self.host(host_name)
        svc = host.service
        if status is not None:
            svc.status = status
            svc.disabled_reason = disabled_reason if status == "disabled" else None
        if forced_down is not None:
            svc.forced_down = forced_down
        self.emit("service", host=host_name, status=svc.status, forced_down=svc.forced_down)
        return svc

    def service_by_id(self, service_id: str) -> Host:
        for host in self.compute_hosts():
            if host.service.id == service_id or str(host.service.legacy_id) == service_id:
                return host
        raise NotFound(f"Service {service_id} could not be found.")

    # ------------------------------------------------------------------ instance listing

    def _sort_key(self, inst: Instance) -> tuple[float, str]:
        return (inst.created, inst.id)

    def list_instances(
        self,
        *,
        host: str | None = None,
        project_id: str | None = None,
        predicate: Callable[[Instance], bool] | None = None,
        marker: str | None = None,
        limit: int | None = None,
    ) -> list[Instance]:
        """Instances newest first (Nova's default sort: created_at desc, id desc).

        ``marker`` continues after that instance's place in the sort order, as Nova's does: it
        must name an existing instance (NotFound otherwise), filtered out or not.  ``limit``
        stops after that many matches, so a page costs what it returns, not the whole table.
        """
        with self.lock:
            if host is not None:
                ids: list[str] = sorted(
                    self.by_host.get(host, {}),
                    key=lambda i: self._sort_key(self.instances[i]),
                    reverse=True,
                )
            else:
                if self._sorted_ids is None:
                    self._sorted_ids = sorted(
                        self.instances,
                        key=lambda i: self._sort_key(self.instances[i]),
                        reverse=True,
                    )
                    self._positions = {i: n for n, i in enumerate(self._sorted_ids)}
                ids = self._sorted_ids
            start = 0
            if marker is not None:
                start = self._after(ids, marker, global_order=host is None)
            out: list[Instance] = []
            for n in range(start, len(ids)):
                inst = self.instances[ids[n]]
                if inst.vm_state == VmState.DELETED:
                    continue
                if project_id is not None and inst.project_id != project_id:
                    continue
                if predicate is not None and not predicate(inst):
                    continue
                out.append(inst)
                if limit is not None and len(out) >= limit:
                    break
            return out

    def _after(self, ids: list[str], marker: str, *, global_order: bool) -> int:
        mark = self.instances.get(marker)
        if mark is None:
            raise BadRequest(f"marker [{marker}] not found")
        if global_order:
            return self._positions[marker] + 1
        key = self._sort_key(mark)
        for n, i in enumerate(ids):
            if self._sort_key(self.instances[i]) < key:
                return n
        return len(ids)

    def record_action(self, inst: Instance, action: str, message: str | None = None) -> None:
        now = self.clock.now()
        self.actions.setdefault(inst.id, []).append(
            InstanceAction(
                action=action,
                instance_id=inst.id,
                request_id=f"req-{self.new_uuid()}",
                user_id=self.admin_user or inst.user_id,
                project_id=self.admin_project or inst.project_id,
                start_time=now,
                updated=now,
                message=message,
            )
        )

    # ------------------------------------------------------------------ placement bookkeeping

    def allocate(self, inst: Instance, host_name: str) -> None:
        if host_name in inst.allocations:
            return
        want = capacity.request_of(inst.flavor, inst.volume_backed)
        used = self.usage[host_name]
        used.vcpus += want.vcpus
        used.memory_mb += want.memory_mb
        used.disk_gb += want.disk_gb
        inst.allocations.add(host_name)

    def deallocate(self, inst: Instance, host_name: str) -> None:
        if host_name not in inst.allocations:
            return
        want = capacity.request_of(inst.flavor, inst.volume_backed)
        used = self.usage[host_name]
        used.vcpus -= want.vcpus
        used.memory_mb -= want.memory_mb
        used.disk_gb -= want.disk_gb
        inst.allocations.discard(host_name)

    def place(self, inst: Instance, hosts: Iterable[Host] | None = None) -> Host | None:
        """Nova's filter scheduler, simplified: ComputeFilter (enabled and up), capacity,
        availability zone, server-group (anti-)affinity; weighed by free RAM (spread)."""
        want = capacity.request_of(inst.flavor, inst.volume_backed)
        group = self.server_groups.get(inst.server_group or "")
        group_hosts = set()
        if group is not None:
            for member in group.members:
                other = self.instances.get(member)
                if other is not None and other.id != inst.id and other.host:
                    group_hosts.add(other.host)
        best: Host | None = None
        best_free = -1
        for host in hosts if hosts is not None else self.hosts.values():
            if not host.compute or host.name == inst.host or host.service.status != "enabled":
                continue
            if inst.requested_az and host.az != inst.requested_az:
                continue
            if group is not None:
                if group.policy == "anti-affinity" and host.name in group_hosts:
                    continue
                if group.policy == "affinity" and group_hosts and host.name not in group_hosts:
                    continue
            used = self.usage[host.name]
            if not capacity.fits(host, used, want) or not self.service_is_up(host):
                continue
            ram = capacity.free(host, used).memory_mb
            if ram > best_free:
                best, best_free = host, ram
        return best

    # ------------------------------------------------------------------ deferred work

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        def run() -> None:
            with self.lock:
                fn()

        self.clock.call_later(delay, run)

    def touch(self, inst: Instance) -> None:
        inst.updated = self.clock.now()

    def invalidate_order(self) -> None:
        self._sorted_ids = None

    def assign(self, inst: Instance, host_name: str | None) -> None:
        if inst.host is not None:
            self.by_host[inst.host].pop(inst.id, None)
        inst.host = host_name
        if host_name is not None:
            self.by_host[host_name][inst.id] = None

    # ------------------------------------------------------------------ power and faults

    def power_off(self, host: Host) -> None:
        """Power loss: heartbeats stop, every VM process on the host dies."""
        if not host.power_on:
            return
        self.set_physical(host, power_on=False, compute_running=False, hung=False)
        for inst_id in list(self.by_host[host.name]):
            self.instances[inst_id].running_on.discard(host.name)
        for inst in self.instances.values():
            inst.running_on.discard(host.name)
        self.emit("power", host=host.name, on=False)

    def power_on(self, host: Host) -> None:
        """Power on: the host boots, then nova-compute starts and runs its init_host cleanup."""
        if host.power_on:
            return
        host.power_on = True
        host.booted_at = self.clock.now()
        self.emit("power", host=host.name, on=True)
        self.later(self.config.host_boot_seconds, lambda: self.start_compute(host))

    def start_compute(self, host: Host) -> None:
        """nova-compute starts: destroy guests evacuated away (migrations -> completed), mark
        guests that died with the host SHUTOFF, then report heartbeats again."""
        if not host.power_on or host.compute_running or not host.compute:
            return
        for mig in self.migrations.values():
            if mig.source_compute != host.name or mig.migration_type != "evacuation":
                continue
            if mig.status not in _EVACUATED_AWAY:
                continue
            inst = self.instances.get(mig.instance_id)
            if inst is not None:
                inst.running_on.discard(host.name)
                if inst.host != host.name:
                    self.deallocate(inst, host.name)
            if mig.status == "done":
                mig.status = "completed"
                mig.updated = self.clock.now()
        for inst_id in list(self.by_host[host.name]):
            inst = self.instances[inst_id]
            if host.name not in inst.running_on and inst.vm_state == VmState.ACTIVE:
                inst.vm_state = VmState.STOPPED
                inst.power_state = 4
                self.touch(inst)
        self.set_physical(host, compute_running=True)

    def apply_power_action(self, host: Host, action: PowerAction) -> None:
        if action == PowerAction.OFF:
            self.power_off(host)
        elif action == PowerAction.ON:
            self.power_on(host)
        elif action in (PowerAction.CYCLE, PowerAction.RESET):
            self.power_off(host)
            self.power_on(host)
        elif action == PowerAction.SOFT and host.power_on and not host.hung:
            # A hung kernel ignores the ACPI request; a healthy one shuts down after a while.
            self.later(self.config.graceful_shutdown_seconds, lambda: self.power_off(host))

    # BmcBackend port (hastack.sim.bmc.backend): the simulated BMCs read and change the truth here.

    def bmc_condition(self, host: str) -> BmcCondition:
        with self.lock:
            return self.host(host).bmc_condition

    def bmc_delay(self, host: str) -> float:
        with self.lock:
            return self.host(host).bmc_delay

    def power_is_on(self, host: str) -> bool:
        with self.lock:
            return self.host(host).power_on

    def set_power(self, host: str, action: PowerAction) -> None:
        with self.lock:
            self.apply_power_action(self.host(host), action)

    # ------------------------------------------------------------------ servers (Nova semantics)

    def check_state(self, inst: Instance, action: str, vm_states: Iterable[VmState]) -> None:
        """nova.compute.api.check_instance_state, with the API's 409 message."""
        if inst.vm_state not in tuple(vm_states):
            raise Conflict(
                f"Cannot '{action}' instance {inst.id} while it is in vm_state {inst.vm_state}"
            )
        if inst.task_state is not None:
            raise Conflict(
                f"Cannot '{action}' instance {inst.id} while it is in task_state {inst.task_state}"
            )

    def new_migration(self, inst: Instance, kind: str, source: str | None) -> Migration:
        now = self.clock.now()
        mig = Migration(
            id=self.next_id(),
            uuid=self.new_uuid(),
            instance_id=inst.id,
            migration_type=kind,
            source_compute=source,
            dest_compute=None,
            status="accepted",
            created=now,
            updated=now,
            project_id=inst.project_id,
            user_id=inst.user_id,
            old_flavor_id=inst.flavor.id,
            new_flavor_id=inst.flavor.id,
        )
        self.migrations[mig.id] = mig
        return mig

    def projects_list(self) -> list[tuple[str, str]]:
        return sorted(self.projects.items(), key=lambda kv: kv[1])
