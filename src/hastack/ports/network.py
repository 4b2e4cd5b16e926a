"""The network port: what hastack reads from and does to Neutron.

Drivers: ``hastack.drivers.openstack.network`` (openstacksdk, against any cloud in clouds.yaml,
including the HTTP simulator and the real-Neutron oracle) and ``hastack.sim.network_driver``
(the in-process simulator in virtual time).  One conformance suite
(tests/contract/test_network_port.py) runs over all of them.

Contract for every driver:

- Reads return plain frozen data (``hastack.domain.network``), never SDK objects; times are
  seconds since the epoch on the cloud's clock (Neutron's ``heartbeat_timestamp`` is UTC).
- Bulk reads are a few calls whatever the size: ``routers`` is one router list plus one
  ``l3-routers`` list per L3 agent (and one ``l3-agents`` call per HA router named in
  ``ha_states``), ``networks`` one network list plus one ``dhcp-networks`` list per DHCP
  agent, ``router_health`` at most a port list and a floating-IP list.
- Errors are translated: :class:`~hastack.errors.TransientError` for what may succeed when
  retried (5xx, timeouts, connection errors), :class:`~hastack.errors.PermanentError` for
  refusals (4xx) with Neutron's message in the text.  Nothing else escapes.
- Scheduling calls are idempotent: adding a binding that exists, or removing one that does
  not, succeeds (Neutron answers the latter with 204 for routers and 409 for networks; the
  driver hides the difference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Protocol

from hastack.domain.network import AgentInfo, NetworkInfo, RouterInfo

# device_owner values of a router's own ports (neutron_lib.constants)
ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
ROUTER_SNAT = "network:router_centralized_snat"
ROUTER_HA_INTERFACE = "network:ha_router_replicated_interface"
ROUTER_DISTRIBUTED_INTERFACE = "network:router_interface_distributed"
ROUTER_HA_PORT = "network:router_ha_interface"
ROUTER_OWNERS = (
    ROUTER_INTERFACE,
    ROUTER_GATEWAY,
    ROUTER_SNAT,
    ROUTER_HA_INTERFACE,
    ROUTER_DISTRIBUTED_INTERFACE,
    ROUTER_HA_PORT,
)


@dataclasses.dataclass(frozen=True)
class PortState:
    id: str
    owner: str  # device_owner
    status: str  # ACTIVE, DOWN, BUILD, ERROR
    host: str  # binding:host_id ("" when unbound)


@dataclasses.dataclass(frozen=True)
class RouterHealth:
    """A router's data path as Neutron reports it: its own ports and its floating IPs."""

    router: str
    ports: tuple[PortState, ...]  # ports with device_id == router and a ROUTER_OWNERS owner
    floating_ips: tuple[tuple[str, str], ...]  # (floating IP id, status) with router_id == router


class NetworkPort(Protocol):
    def agents(self) -> list[AgentInfo]:
        """Every L3, DHCP, Open vSwitch and metadata agent, with ``alive``,
        ``admin_state_up``, AZ, ``agent_mode`` (L3) and ``heartbeat_at``."""
        ...

    def routers(self, *, ha_states: Collection[str] = ()) -> list[RouterInfo]:
        """Every router with the L3 agents hosting it.  ``ha_states`` names HA routers whose
        per-agent ``ha_state`` to read as well (one call each); other routers' ``ha_states``
        are empty."""
        ...

    def networks(self) -> list[NetworkInfo]:
        """Every network with a DHCP-enabled subnet, with the DHCP agents serving it."""
        ...

    def add_router(self, agent_id: str, router_id: str) -> None:
        """``POST /v2.0/agents/{agent}/l3-routers``.  Already hosted there: success."""
        ...

    def remove_router(self, agent_id: str, router_id: str) -> None:
        """``DELETE /v2.0/agents/{agent}/l3-routers/{router}``.  Not hosted there: success."""
        ...

    def add_network(self, agent_id: str, network_id: str) -> None:
        """``POST /v2.0/agents/{agent}/dhcp-networks``.  Already hosted there: success."""
        ...

    def remove_network(self, agent_id: str, network_id: str) -> None:
        """``DELETE /v2.0/agents/{agent}/dhcp-networks/{network}``.  Not hosted: success."""
        ...

    def router_health(self, router_ids: Collection[str]) -> Mapping[str, RouterHealth]:
        """:class:`RouterHealth` of each router in ``router_ids`` (routers that no longer
        exist are left out)."""
        ...
