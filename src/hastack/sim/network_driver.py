"""The network port straight over the simulated :class:`~hastack.sim.world.World`, for virtual
time.

:class:`SimNetwork` reads and schedules with the same :class:`~hastack.sim.neutron.NeutronState`
methods the HTTP face calls, so the two faces cannot disagree.  Calls are synchronous; the
agents' asynchronous work (building a router, VRRP failover) runs as events on the world's
clock.

Faults: a ``faults`` hook stands for a failed Neutron API call, as for
:class:`~hastack.sim.drivers.SimCompute`: ``faults(operation)`` is called at the start of every
port call with the method's name (``"agents"``, ``"routers"``, ``"networks"``, ``"add_router"``,
``"remove_router"``, ``"add_network"``, ``"remove_network"``, ``"router_health"``) and may raise
:class:`~hastack.errors.TransientError` or :class:`~hastack.errors.PermanentError`; the call then
has no effect on the world.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from hastack.domain.network import AgentInfo, AgentKind, AgentMode, NetworkInfo, RouterInfo
from hastack.ports.network import ROUTER_OWNERS, PortState, RouterHealth
from hastack.sim import neutron as n
from hastack.sim.drivers import translated
from hastack.sim.world import World

Faults = Callable[[str], None]

_KINDS = {
    n.L3: AgentKind.L3,
    n.DHCP: AgentKind.DHCP,
    n.OVS: AgentKind.OVS,
    n.METADATA: AgentKind.METADATA,
}
_MODES = {
    "legacy": AgentMode.LEGACY,
    "dvr": AgentMode.DVR,
    "dvr_no_external": AgentMode.DVR,
    "dvr_snat": AgentMode.DVR_SNAT,
}


class SimNetwork:
    """:class:`~hastack.ports.network.NetworkPort` over a :class:`World` (as admin)."""

    def __init__(self, world: World, *, faults: Faults | None = None) -> None:
        self.world = world
        self.faults = faults

    @property
    def _state(self) -> n.NeutronState:
        return self.world.neutron

    def _enter(self, operation: str) -> None:
        if self.faults is not None:
            self.faults(operation)

    # ------------------------------------------------------------------ reads

    def agents(self) -> list[AgentInfo]:
        self._enter("agents")
        st = self._state
        with self.world.lock:
            return [
                AgentInfo(
                    id=a.id,
                    kind=_KINDS[a.agent_type],
                    host=a.host,
                    alive=st.is_alive(a),
                    admin_state_up=a.admin_state_up,
                    availability_zone=a.availability_zone or "",
                    mode=_MODES.get(str(a.configurations.get("agent_mode")), AgentMode.NONE)
                    if a.agent_type == n.L3
                    else AgentMode.NONE,
                    heartbeat_at=st.heartbeat_at(a),
                )
                for a in st.agents.values()
            ]

    def routers(self, *, ha_states: Collection[str] = ()) -> list[RouterInfo]:
        self._enter("routers")
        st = self._state
        wanted = set(ha_states)
        with self.world.lock:
            return [
                RouterInfo(
                    id=r.id,
                    name=r.name,
                    agents=tuple(st.l3_bindings.get(r.id, {})),
                    distributed=r.distributed,
                    ha=r.ha,
                    ha_states=st.ha_states(r.id) if r.ha and r.id in wanted else {},
                )
                for r in st.routers.values()
            ]

    def networks(self) -> list[NetworkInfo]:
        self._enter("networks")
        st = self._state
        with self.world.lock:
            with_dhcp = {s.network_id for s in st.subnets.values() if s.enable_dhcp}
            return [
                NetworkInfo(
                    id=net.id, name=net.name, agents=tuple(st.dhcp_bindings.get(net.id, ()))
                )
                for net in st.networks.values()
                if net.id in with_dhcp
            ]

    def router_health(self, router_ids: Collection[str]) -> Mapping[str, RouterHealth]:
        self._enter("router_health")
        st = self._state
        out: dict[str, RouterHealth] = {}
        with self.world.lock:
            for router_id in dict.fromkeys(router_ids):
                if router_id not in st.routers:
                    continue
                ports = [
                    PortState(id=p.id, owner=p.device_owner, status=p.status, host=p.host_id)
                    for p in st.device_ports(router_id)
                    if p.device_owner in ROUTER_OWNERS
                ]
                fips = sorted((f.id, f.status) for f in st.router_fips(router_id))
                out[router_id] = RouterHealth(
                    router=router_id,
                    ports=tuple(sorted(ports, key=lambda p: p.id)),
                    floating_ips=tuple(fips),
                )
        return out

    # ------------------------------------------------------------------ scheduling

    def add_router(self, agent_id: str, router_id: str) -> None:
        """Idempotent: adding a binding that exists succeeds (NeutronState returns at once)."""
        self._enter("add_router")
        with translated("neutron"), self.world.lock:
            self._state.add_router_to_agent(agent_id, router_id)

    def remove_router(self, agent_id: str, router_id: str) -> None:
        """Idempotent; a router that no longer exists is hosted nowhere: success."""
        self._enter("remove_router")
        with translated("neutron"), self.world.lock:
            self._state.agent(agent_id)
            if router_id in self._state.routers:
                self._state.remove_router_from_agent(agent_id, router_id)

    def add_network(self, agent_id: str, network_id: str) -> None:
        self._enter("add_network")
        with translated("neutron"), self.world.lock:
            if agent_id in self._state.dhcp_bindings.get(network_id, ()):
                self._state.agent(agent_id)
                return
            self._state.add_network_to_agent(agent_id, network_id)

    def remove_network(self, agent_id: str, network_id: str) -> None:
        self._enter("remove_network")
        with translated("neutron"), self.world.lock:
            self._state.agent(agent_id)
            if agent_id in self._state.dhcp_bindings.get(network_id, ()):
                self._state.remove_network_from_agent(agent_id, network_id)
