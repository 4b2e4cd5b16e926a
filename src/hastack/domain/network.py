"""Neutron's agents, routers and networks, as the network-HA planner sees them."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


class AgentKind(enum.StrEnum):
    L3 = "l3"
    DHCP = "dhcp"
    OVS = "ovs"
    METADATA = "metadata"


class AgentMode(enum.StrEnum):
    """An L3 agent's ``agent_mode``."""

    LEGACY = "legacy"
    DVR = "dvr"  # compute-node DVR: no SNAT, never hosts a legacy router
    DVR_SNAT = "dvr_snat"  # network-node DVR: hosts SNAT and legacy routers
    NONE = ""  # not an L3 agent


@dataclasses.dataclass(frozen=True)
class AgentInfo:
    id: str
    kind: AgentKind
    host: str
    alive: bool
    admin_state_up: bool
    availability_zone: str = ""
    mode: AgentMode = AgentMode.NONE
    heartbeat_at: float | None = None  # Neutron's heartbeat_timestamp, seconds since the epoch

    @property
    def usable(self) -> bool:
        return self.alive and self.admin_state_up


@dataclasses.dataclass(frozen=True)
class RouterInfo:
    id: str
    name: str
    agents: tuple[str, ...]  # the L3 agents hosting it
    distributed: bool = False
    ha: bool = False
    availability_zones: tuple[str, ...] = ()  # its AZ hints (empty: any)
    ha_states: Mapping[str, str] = dataclasses.field(default_factory=dict)  # agent -> state

    @property
    def legacy(self) -> bool:
        return not self.distributed and not self.ha


@dataclasses.dataclass(frozen=True)
class NetworkInfo:
    id: str
    name: str
    agents: tuple[str, ...]  # the DHCP agents serving it
    availability_zones: tuple[str, ...] = ()
