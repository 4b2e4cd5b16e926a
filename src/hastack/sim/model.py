"""The simulated cloud's entities: plain mutable records owned by :class:`~hastack.sim.world.World`.

Physical truth (power, hang, isolation, which hosts really execute a VM) lives beside the API view
(what Nova's database says), because a failing cloud is exactly where the two disagree.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from hastack.sim.bmc.backend import BmcCondition


class VmState(enum.StrEnum):
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    ERROR = "error"
    DELETED = "deleted"


# Nova's status column is derived from vm_state and task_state (nova/api/openstack/common.py).
_STATUS = {
    VmState.BUILDING: "BUILD",
    VmState.ACTIVE: "ACTIVE",
    VmState.STOPPED: "SHUTOFF",
    VmState.ERROR: "ERROR",
    VmState.DELETED: "DELETED",
}
_TASK_STATUS = {"rebuilding": "REBUILD", "rebuild_spawning": "REBUILD"}


@dataclasses.dataclass
class Flavor:
    id: str
    name: str
    vcpus: int
    ram: int  # MiB
    disk: int  # GiB
    ephemeral: int = 0
    swap: int = 0
    is_public: bool = True
    description: str | None = None
    extra_specs: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Image:
    id: str
    name: str
    size: int
    created: float
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: str = "active"
    visibility: str = "public"
    owner: str = ""
    disk_format: str = "qcow2"
    container_format: str = "bare"
    min_disk: int = 0
    min_ram: int = 0


@dataclasses.dataclass
class Service:
    """A nova-compute service row.  ``last_report`` is when the host last wrote its heartbeat
    while it could not; while it can, ``World.service_updated_at`` derives it from the clock."""

    id: str  # uuid (exposed from microversion 2.53)
    legacy_id: int
    host: str
    binary: str = "nova-compute"
    status: str = "enabled"
    disabled_reason: str | None = None
    forced_down: bool = False
    last_report: float = 0.0
    phase: float = 0.0  # offset of this host's report ticks, so hosts do not report in lockstep
    created: float = 0.0
    alive_since: float = 0.0  # when heartbeats last resumed


@dataclasses.dataclass
class Host:
    name: str
    az: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    host_ip: str
    service: Service
    hypervisor_id: str  # uuid, also the resource provider uuid
    hypervisor_legacy_id: int
    # physical truth
    power_on: bool = True
    hung: bool = False
    isolated: bool = False
    compute_running: bool = True
    booted_at: float = 0.0
    bmc_condition: BmcCondition = BmcCondition.OK
    bmc_delay: float = 0.4  # below IPMI clients' retry interval, or retransmits run twice
    bmc_username: str = "admin"
    bmc_password: str = "password"
    ipmi_port: int = 0
    probe_port: int = 0  # the TCP port that answers while the host's OS is reachable
    # False for a network node: no nova-compute at all, so no service, hypervisor or resource
    # provider, and the scheduler never sees it; power, faults, BMC and probe act as for any host.
    compute: bool = True

    @property
    def heartbeating(self) -> bool:
        """Whether nova-compute on this host is writing heartbeats right now."""
        return self.power_on and not self.hung and not self.isolated and self.compute_running


@dataclasses.dataclass
class Instance:
    id: str
    name: str
    project_id: str
    user_id: str
    flavor: Flavor
    image_id: str  # "" when volume-backed
    created: float
    host: str | None
    az: str
    requested_az: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    server_group: str | None = None
    volume_backed: bool = False
    vm_state: VmState = VmState.BUILDING
    task_state: str | None = None
    power_state: int = 0  # 0 NOSTATE, 1 RUNNING, 4 SHUTDOWN
    locked: bool = False
    locked_reason: str | None = None
    locked_by: str | None = None  # "admin" or "owner", as Nova records it
    launched_at: float | None = None
    fault: str | None = None  # the server's fault message, shown while it is ERROR
    updated: float = 0.0
    # physical truth: hosts where a process of this VM exists (two of them is a split brain)
    running_on: set[str] = dataclasses.field(default_factory=set)
    # placement: hosts holding an allocation for this instance
    allocations: set[str] = dataclasses.field(default_factory=set)
    number: int = 0  # the database row id, behind the libvirt name

    @property
    def instance_name(self) -> str:
        """Nova's default instance_name_template, ``instance-%08x``."""
        return f"instance-{self.number:08x}"

    @property
    def status(self) -> str:
        if self.task_state in _TASK_STATUS:
            return _TASK_STATUS[self.task_state]
        return _STATUS[self.vm_state]


@dataclasses.dataclass
class Migration:
    id: int
    uuid: str
    instance_id: str
    migration_type: str
    source_compute: str | None
    dest_compute: str | None
    status: str
    created: float
    updated: float
    project_id: str
    user_id: str
    old_flavor_id: str
    new_flavor_id: str


@dataclasses.dataclass
class InstanceAction:
    action: str
    instance_id: str
    request_id: str
    user_id: str
    project_id: str
    start_time: float
    updated: float
    message: str | None = None


@dataclasses.dataclass
class Aggregate:
    id: int
    uuid: str
    name: str
    az: str | None
    hosts: list[str]
    metadata: dict[str, str]
    created: float
    updated: float | None = None


@dataclasses.dataclass
class ServerGroup:
    id: str
    name: str
    policy: str  # affinity, anti-affinity, soft-affinity, soft-anti-affinity
    project_id: str
    user_id: str
    members: list[str] = dataclasses.field(default_factory=list)
    rules: dict[str, Any] = dataclasses.field(default_factory=dict)
