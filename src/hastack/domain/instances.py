"""Instances, capacity and recovery policy, as the evacuation planner sees them."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class FlavorInfo:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int  # root + ephemeral + swap, as Placement counts it for a local-disk instance
    extra_specs: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    id: str
    name: str
    host: str
    project_id: str
    status: str  # Nova's: ACTIVE, SHUTOFF, ERROR, ...
    task_state: str | None
    locked: bool
    flavor: FlavorInfo
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    image_properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    image_unreadable: bool = False  # Glance refused the image: image rules cannot be decided
    volume_backed: bool = False
    server_groups: tuple[str, ...] = ()
    availability_zone: str = ""
    pinned_az: bool = False  # booted into an explicit AZ: must stay in it


@dataclasses.dataclass(frozen=True)
class HostCapacity:
    """A possible destination: what Placement says is free, and where it sits."""

    host: str
    availability_zone: str
    aggregates: frozenset[str]
    enabled: bool
    up: bool
    free_vcpus: int
    free_ram_mb: int
    free_disk_gb: int
    spare: bool = False  # a reserved host, used only when the policy allows and others are full


@dataclasses.dataclass(frozen=True)
class ServerGroupInfo:
    id: str
    policy: str  # affinity, anti-affinity, soft-affinity, soft-anti-affinity
    members: frozenset[str]


class RuleKind(enum.StrEnum):
    METADATA = "metadata"  # instance metadata key=value
    FLAVOR = "flavor"  # flavor extra spec key=value
    IMAGE = "image"  # image property key=value
    AGGREGATE = "aggregate"  # the instance's host is in aggregate <value>
    PROJECT = "project"  # the instance belongs to project <value>


@dataclasses.dataclass(frozen=True)
class Rule:
    """A protection rule. Values compare case-insensitively for booleans ("True" == "true")."""

    kind: RuleKind
    key: str = ""
    value: str = ""


class Protect(enum.StrEnum):
    ALL = "all"  # every instance, minus opt-outs
    OPT_IN = "opt-in"  # only instances matching an opt-in rule, minus opt-outs


class PlacementMode(enum.StrEnum):
    PLAN = "plan"  # hastack chooses each destination (capacity, AZ, anti-affinity)
    SCHEDULER = "scheduler"  # Nova's scheduler chooses; hastack still orders and bounds


MASAKARI_OPT_IN = Rule(RuleKind.METADATA, "HA_Enabled", "True")


@dataclasses.dataclass(frozen=True)
class RecoveryPolicy:
    """How a segment recovers its instances.

    Fail-closed rule: an instance whose protection cannot be decided (an image rule is in play
    and its image properties could not be read) is not protected, and a verdict says so;
    opt-outs always win over opt-ins.
    """

    protect: Protect = Protect.ALL
    opt_in: tuple[Rule, ...] = (MASAKARI_OPT_IN,)
    opt_out: tuple[Rule, ...] = (Rule(RuleKind.METADATA, "HA_Enabled", "False"),)
    priority_key: str = "hastack:priority"  # metadata, integer, higher restarts first
    group_key: str = "hastack:restart_group"  # metadata: the instance's restart group
    depends_key: str = "hastack:depends_on"  # metadata: comma-separated groups to wait for
    placement: PlacementMode = PlacementMode.PLAN
    use_spare_hosts: bool = True
    shared_storage: bool = False  # instance disks live on shared storage: evacuation keeps them
    allow_local_disk_rebuild: bool = False  # rebuild local-disk VMs from image (data loss)
