"""The simulated cloud's Neutron: agents, networks, ports, routers, floating IPs, and the data
plane behind them.

Agents heartbeat like nova-compute does (see ``World.service_updated_at``): while the agent's
process runs on a host that is powered, not hung and not isolated, its ``heartbeat_timestamp``
advances every ``report_interval`` (30 s, Neutron's default); the moment it cannot, the timestamp
freezes and the agent reads ``alive: false`` once ``agent_down_time`` (75 s, Neutron's default)
has passed.  Nothing ticks: the timestamp is derived from the clock.

Router and DHCP scheduling follow ``neutron/db/l3_agentschedulers_db.py`` and
``neutron/db/agentschedulers_db.py``: a router may be bound to a dead agent (Neutron does not
check liveness on manual scheduling), a legacy router hosted elsewhere is a 409, a disabled or
non-L3 agent a 404, a ``dvr`` agent refuses manual scheduling.  An HA router is bound to
``max_l3_agents_per_router`` agents, a distributed router's SNAT part to one ``dvr_snat`` agent.
A router's ports turn ACTIVE on the serving agent's host ``port_activate_seconds`` after a *live*
agent picks it up; when an agent dies the ports keep whatever status they had.

Data plane truth (:meth:`NeutronState.forwarding`), the rules:

1. A *beating* L3 agent (process running, host powered, not hung, not isolated) bound to a
   router builds the router's namespace ``port_activate_seconds`` after the binding (or after it
   starts beating again).
2. The namespace survives the agent process dying, and survives the binding being removed while
   the agent is not beating (nobody could tell it).  Removing a binding from a beating agent
   removes the namespace at once; an agent that starts beating again resyncs and removes the
   namespaces of routers no longer bound to it.
3. Powering a host off (or rebooting it) destroys every namespace on it.
4. A hung host forwards nothing (its namespaces come back to life when the hang clears).
5. An isolated host keeps forwarding: packets still flow on its data network.
6. An HA router forwards only where keepalived is VRRP master.  keepalived runs in every
   namespace of the router on a powered, unhung host, whatever the agent process does.  Hosts
   that can hear each other form a partition (every non-isolated host together; each isolated
   host alone).  A partition with no master promotes its first instance (namespace order)
   ``vrrp_failover_seconds`` later; a partition with several masters keeps the first and demotes
   the others at once.  So an isolated master stays master while the other side promotes: two
   masters, a split brain, until the isolation heals.  A hung master is demoted; it comes back
   as a backup.  A new instance joins as backup when its partition has a master.
7. :meth:`NeutronState.vrrp_fault` overrides rule 6 for one router: ``none`` (no master),
   ``split`` (the first two instances masters) or ``clear``.
8. keepalived's state reaches Neutron's database (the binding's ``ha_state``) only through a
   beating L3 agent; the router's ports follow the reported master's host.

All methods run under ``world.lock`` (callers of the public operations take it).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from hastack.sim.errors import BadRequest, CloudError

if TYPE_CHECKING:
    from hastack.sim.model import Host
    from hastack.sim.world import World

L3 = "L3 agent"
DHCP = "DHCP agent"
OVS = "Open vSwitch agent"
METADATA = "Metadata agent"
AGENT_KINDS = (  # agent_type, binary, topic
    (L3, "neutron-l3-agent", "l3_agent"),
    (DHCP, "neutron-dhcp-agent", "dhcp_agent"),
    (OVS, "neutron-openvswitch-agent", "N/A"),
    (METADATA, "neutron-metadata-agent", "N/A"),
)
OWNER_INTERFACE = "network:router_interface"
OWNER_DVR_INTERFACE = "network:router_interface_distributed"
OWNER_SNAT = "network:router_centralized_snat"
OWNER_GATEWAY = "network:router_gateway"
INTERFACE_OWNERS = (OWNER_INTERFACE, OWNER_DVR_INTERFACE)
ROUTER_OWNERS = (OWNER_INTERFACE, OWNER_DVR_INTERFACE, OWNER_SNAT, OWNER_GATEWAY)
AGENT_NAMES = {"l3": L3, "dhcp": DHCP, "ovs": OVS, "metadata": METADATA}
DVR_MODES = ("dvr", "dvr_no_external")
VRRP_FAULTS = ("none", "split", "clear")
OWNER_DHCP = "network:dhcp"
OWNER_FLOATING = "network:floatingip"
OWNER_COMPUTE = "compute:nova"


class NeutronError(CloudError):
    """A refusal in Neutron's shape: ``{"NeutronError": {"type": kind, "message": ...}}``."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclasses.dataclass
class NeutronConfig:
    report_interval: float = 30.0  # neutron/conf/agent/common.py
    agent_down_time: float = 75.0  # neutron/conf/agent/database/agents_db.py
    port_activate_seconds: float = 1.0
    # neutron/conf/db/l3_hamode_db.py's default is 3; the simulator binds an HA router to 2.
    max_l3_agents_per_router: int = 2
    vrrp_failover_seconds: float = 3.0  # keepalived: 3 missed adverts at advert_int 1 s


@dataclasses.dataclass
class Agent:
    id: str
    agent_type: str
    binary: str
    topic: str
    host: str
    availability_zone: str | None
    configurations: dict[str, Any]
    created_at: float
    started_at: float
    admin_state_up: bool = True
    running: bool = True  # physical truth: the agent's process exists
    last_report: float = 0.0
    alive_since: float = 0.0
    phase: float = 0.0
    beating: bool = True  # whether it could heartbeat at the last sync


@dataclasses.dataclass
class Network:
    id: str
    name: str
    project_id: str
    created_at: float
    external: bool = False
    shared: bool = False
    status: str = "ACTIVE"
    subnets: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Subnet:
    id: str
    name: str
    network_id: str
    project_id: str
    cidr: str
    gateway_ip: str
    created_at: float
    enable_dhcp: bool = True


@dataclasses.dataclass
class Port:
    id: str
    network_id: str
    project_id: str
    device_owner: str
    device_id: str
    fixed_ips: list[dict[str, str]]
    mac_address: str
    created_at: float
    status: str = "DOWN"  # DOWN, ACTIVE, BUILD
    host_id: str = ""  # binding:host_id
    name: str = ""


@dataclasses.dataclass
class Router:
    id: str
    name: str
    project_id: str
    created_at: float
    distributed: bool = False
    ha: bool = False
    external_network_id: str | None = None
    status: str = "ACTIVE"
    admin_state_up: bool = True


@dataclasses.dataclass
class FloatingIP:
    id: str
    project_id: str
    floating_network_id: str
    floating_ip_address: str
    created_at: float
    router_id: str | None = None
    port_id: str | None = None
    fixed_ip_address: str | None = None
    status: str = "DOWN"


class NeutronState:
    """Neutron's database and its agents' behaviour, inside one :class:`World`."""

    def __init__(self, world: World, config: NeutronConfig | None = None) -> None:
        self.world = world
        self.config = config or NeutronConfig()
        self.agents: dict[str, Agent] = {}
        self.networks: dict[str, Network] = {}
        self.subnets: dict[str, Subnet] = {}
        self.ports: dict[str, Port] = {}
        self.routers: dict[str, Router] = {}
        self.floating_ips: dict[str, FloatingIP] = {}
        self.l3_bindings: dict[str, dict[str, str]] = {}  # router -> {agent: ha_state}
        self.dhcp_bindings: dict[str, list[str]] = {}  # network -> agents
        self.ports_by_device: dict[str, dict[str, None]] = {}  # device_id -> port ids
        self.fips_by_router: dict[str, dict[str, None]] = {}  # router -> floating IP ids
        self.agents_by_host: dict[str, list[str]] = {}
        self._allocated: dict[str, int] = {}  # network -> addresses handed out
        # data plane truth: router -> agents whose host holds its namespace (in build order)
        self.namespaces: dict[str, dict[str, None]] = {}
        self.masters: dict[str, set[str]] = {}  # HA router -> agents whose keepalived is master
        self.vrrp_forced: dict[str, str] = {}  # HA router -> "none" | "split"
        self._promoting: set[tuple[str, str]] = set()
        world.subscribe(self._on_event)

    def new_id(self) -> str:
        return self.world.new_uuid()

    # ------------------------------------------------------------------ agents and heartbeats

    def add_agents(
        self, host: Host, agent_mode: str = "legacy", kinds: tuple[str, ...] | None = None
    ) -> list[Agent]:
        """Start agents on ``host``: by default the L3, DHCP, OVS and metadata agents of a
        network node; ``kinds`` (agent types) narrows it, e.g. to a DVR compute host's L3 and
        OVS agents."""
        now = self.world.clock.now()
        made = []
        for agent_type, binary, topic in AGENT_KINDS:
            if kinds is not None and agent_type not in kinds:
                continue
            conf: dict[str, Any] = {}
            if agent_type == L3:
                conf = {
                    "agent_mode": agent_mode,
                    "routers": 0,
                    "handle_internal_only_routers": True,
                }
            elif agent_type == DHCP:
                conf = {"networks": 0, "dhcp_driver": "neutron.agent.linux.dhcp.Dnsmasq"}
            elif agent_type == OVS:
                conf = {"bridge_mappings": {"public": "br-ex"}, "tunnel_types": ["vxlan"]}
            zone = host.az if agent_type in (L3, DHCP) else None
            agent = Agent(
                id=self.new_id(),
                agent_type=agent_type,
                binary=binary,
                topic=topic,
                host=host.name,
                availability_zone=zone,
                configurations=conf,
                created_at=now,
                started_at=now,
                last_report=now,
                alive_since=now,
                phase=self.world.rng.uniform(0, self.config.report_interval),
                beating=self._can_beat(host),
            )
            self.agents[agent.id] = agent
            self.agents_by_host.setdefault(host.name, []).append(agent.id)
            made.append(agent)
        return made

    def agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise NeutronError(
                404, "AgentNotFound", f"Agent {agent_id} could not be found."
            ) from None

    def host_agents(self, host_name: str) -> list[Agent]:
        return [self.agents[a] for a in self.agents_by_host.get(host_name, ())]

    @staticmethod
    def _can_beat(host: Host) -> bool:
        return host.power_on and not host.hung and not host.isolated

    def _tick(self, agent: Agent) -> float:
        interval = self.config.report_interval
        now = self.world.clock.now()
        return agent.phase + ((now - agent.phase) // interval) * interval

    def heartbeat_at(self, agent: Agent) -> float:
        """When ``agent`` last reported state (Neutron's ``heartbeat_timestamp``)."""
        self._sync(agent)
        if not agent.beating:
            return agent.last_report
        tick = self._tick(agent)
        return max(agent.last_report, tick) if tick >= agent.alive_since else agent.last_report

    def is_alive(self, agent: Agent) -> bool:
        """``not neutron.common.utils.is_agent_down(heartbeat_timestamp)``."""
        return self.world.clock.now() - self.heartbeat_at(agent) <= self.config.agent_down_time

    def _sync(self, agent: Agent) -> None:
        """Record a change in whether ``agent`` can heartbeat (called at the change's instant)."""
        host = self.world.hosts.get(agent.host)
        beating = agent.running and host is not None and self._can_beat(host)
        if beating == agent.beating:
            return
        now = self.world.clock.now()
        if agent.beating:
            tick = self._tick(agent)
            agent.last_report = (
                max(agent.last_report, tick) if tick >= agent.alive_since else agent.last_report
            )
        else:
            agent.last_report = agent.alive_since = now  # an agent reports as soon as it can
        agent.beating = beating
        if beating and agent.agent_type == L3:
            self._resync(agent)

    def _resync(self, agent: Agent) -> None:
        """An L3 agent back in touch: drop stale namespaces, rebuild the bound routers."""
        for router_id, holders in list(self.namespaces.items()):
            if agent.id in holders and agent.id not in self.l3_bindings.get(router_id, {}):
                self._drop_namespace(router_id, agent.id)
        for router_id, bound in self.l3_bindings.items():
            if agent.id in bound:
                self._report(router_id)
                self._schedule_activation(router_id, agent)

    def _on_event(self, kind: str, fields: dict[str, Any]) -> None:
        host_name = fields.get("host")
        if not isinstance(host_name, str) or host_name not in self.agents_by_host:
            return
        agents = self.host_agents(host_name)
        if kind == "power" and not fields.get("on"):
            for agent in agents:
                self._sync(agent)
                agent.running = False  # the processes died with the host
                for router_id, holders in list(self.namespaces.items()):
                    if agent.id in holders:
                        self._drop_namespace(router_id, agent.id)
        elif kind == "power" and fields.get("on"):
            boot = self.world.config.host_boot_seconds
            self.world.later(boot, lambda: self.start_agents(host_name))
        for agent in agents:
            self._sync(agent)
        ids = set(self.agents_by_host[host_name])
        for router_id, holders in list(self.namespaces.items()):
            if ids.intersection(holders):
                self._vrrp_settle(router_id)

    def kill_agent(self, host_name: str, kind: str = "l3") -> Agent:
        """The ``agent-dead`` fault: one agent process on the host dies (``kind``: l3, dhcp,
        ovs, metadata); the host and its other agents stay up."""
        agent_type = AGENT_NAMES.get(kind)
        if agent_type is None:
            raise BadRequest(f"unknown agent {kind!r}; choose from {', '.join(AGENT_NAMES)}")
        for agent in self.host_agents(host_name):
            if agent.agent_type == agent_type:
                agent.running = False
                self._sync(agent)
                return agent
        raise BadRequest(f"host {host_name} runs no {agent_type}")

    def kill_agents(self, host_name: str) -> None:
        """The ``agents-down`` fault: every Neutron agent process on the host dies."""
        for agent in self.host_agents(host_name):
            agent.running = False
            self._sync(agent)

    def start_agents(self, host_name: str) -> None:
        """Start the host's agents again (after a boot, or on recovery), if the host is up."""
        host = self.world.hosts.get(host_name)
        if host is None or not host.power_on:
            return
        for agent in self.host_agents(host_name):
            if not agent.running:
                agent.running = True
                agent.started_at = self.world.clock.now()
            self._sync(agent)

    def set_admin_state(self, agent_id: str, up: bool) -> Agent:
        agent = self.agent(agent_id)
        agent.admin_state_up = up
        return agent

    # ------------------------------------------------------------------ lookups

    def router(self, router_id: str) -> Router:
        try:
            return self.routers[router_id]
        except KeyError:
            msg = f"Router {router_id} could not be found"
            raise NeutronError(404, "RouterNotFound", msg) from None

    def network(self, network_id: str) -> Network:
        try:
            return self.networks[network_id]
        except KeyError:
            msg = f"Network {network_id} could not be found."
            raise NeutronError(404, "NetworkNotFound", msg) from None

    def subnet(self, subnet_id: str) -> Subnet:
        try:
            return self.subnets[subnet_id]
        except KeyError:
            msg = f"Subnet {subnet_id} could not be found."
            raise NeutronError(404, "SubnetNotFound", msg) from None

    def port(self, port_id: str) -> Port:
        try:
            return self.ports[port_id]
        except KeyError:
            msg = f"Port {port_id} could not be found."
            raise NeutronError(404, "PortNotFound", msg) from None

    def floating_ip(self, fip_id: str) -> FloatingIP:
        try:
            return self.floating_ips[fip_id]
        except KeyError:
            msg = f"Floating IP {fip_id} could not be found"
            raise NeutronError(404, "FloatingIPNotFound", msg) from None

    def device_ports(self, device_id: str) -> list[Port]:
        return [self.ports[p] for p in self.ports_by_device.get(device_id, ())]

    def router_ports(self, router_id: str) -> list[Port]:
        return [p for p in self.device_ports(router_id) if p.device_owner in ROUTER_OWNERS]

    def router_fips(self, router_id: str) -> list[FloatingIP]:
        return [self.floating_ips[f] for f in self.fips_by_router.get(router_id, ())]

    # ------------------------------------------------------------------ L3 scheduling

    def add_router_to_agent(self, agent_id: str, router_id: str) -> None:
        """``add_router_to_l3_agent``: validation first, then the binding; liveness unchecked."""
        router = self.router(router_id)
        agent = self.agent(agent_id)
        if agent.agent_type != L3 or not agent.admin_state_up:
            msg = f"Agent {agent_id} is not a L3 Agent or has been disabled"
            raise NeutronError(404, "InvalidL3Agent", msg)
        mode = agent.configurations.get("agent_mode", "legacy")
        if mode in DVR_MODES:
            msg = "Not allowed to manually assign a router to an agent in 'dvr' mode."
            raise NeutronError(409, "DVRL3CannotAssignToDvrAgent", msg)
        if mode == "legacy" and router.distributed:
            msg = f"Cannot host distributed router {router_id} on legacy L3 agent {agent_id}."
            raise NeutronError(409, "RouterL3AgentMismatch", msg)
        bound = self.l3_bindings.setdefault(router_id, {})
        if agent_id in bound:
            return
        if bound and not router.ha:
            other = next(iter(bound))
            msg = f"The router {router_id} has been already hosted by the L3 Agent {other}."
            raise NeutronError(409, "RouterHostedByL3Agent", msg)
        bound[agent_id] = "standby" if bound else "active"
        self._count(agent, "routers", +1)
        if router.distributed:
            for port in self.router_ports(router_id):
                if port.device_owner != OWNER_DVR_INTERFACE:
                    port.host_id = agent.host  # the SNAT part lives on the dvr_snat agent's host
        if agent.beating:
            self._schedule_activation(router_id, agent)

    def remove_router_from_agent(self, agent_id: str, router_id: str) -> None:
        agent = self.agent(agent_id)
        if agent.configurations.get("agent_mode") in DVR_MODES:
            msg = "Not allowed to manually remove a router from an agent in 'dvr' mode."
            raise NeutronError(409, "DVRL3CannotRemoveFromDvrAgent", msg)
        bound = self.l3_bindings.get(router_id, {})
        if agent_id not in bound:
            return  # Neutron deletes the (absent) binding rows and answers 204
        del bound[agent_id]
        self._count(agent, "routers", -1)
        if agent.beating:  # the agent is told and tears the namespace down
            self._drop_namespace(router_id, agent_id)
        if bound:
            return
        for port in self.router_ports(router_id):
            port.status = "DOWN"
        for fip in self.router_fips(router_id):
            fip.status = "DOWN"

    def _schedule_activation(self, router_id: str, agent: Agent) -> None:
        def activate() -> None:
            if agent.id not in self.l3_bindings.get(router_id, {}) or not agent.beating:
                return
            router = self.routers.get(router_id)
            if router is None:
                return
            self.namespaces.setdefault(router_id, {})[agent.id] = None
            if router.ha:
                self._vrrp_settle(router_id)
            else:
                self._serve(router_id, agent)

        self.world.later(self.config.port_activate_seconds, activate)

    def _serve(self, router_id: str, agent: Agent) -> None:
        """The agent reports the router's ports up on its host, and its floating IPs active."""
        for port in self.router_ports(router_id):
            port.status = "ACTIVE"
            if port.device_owner != OWNER_DVR_INTERFACE:
                port.host_id = agent.host
        for fip in self.router_fips(router_id):
            fip.status = "ACTIVE"

    def _served_by(self, router_id: str) -> Agent | None:
        """The beating agent that holds the router's namespace (the master's, for HA)."""
        router = self.routers.get(router_id)
        masters = self.masters.get(router_id, set())
        for agent_id in self.namespaces.get(router_id, ()):
            agent = self.agents[agent_id]
            if agent.beating and agent_id in self.l3_bindings.get(router_id, {}):
                if router is not None and router.ha and agent_id not in masters:
                    continue
                return agent
        return None

    def _refresh(self, router_id: str) -> None:
        """Tell the router's beating agents it changed: they sync it after the usual delay."""
        for agent_id in self.l3_bindings.get(router_id, {}):
            agent = self.agents[agent_id]
            if agent.beating:
                self._schedule_activation(router_id, agent)

    def l3_agents_of(self, router_id: str) -> list[Agent]:
        self.router(router_id)
        return [self.agents[a] for a in self.l3_bindings.get(router_id, {})]

    def routers_on(self, agent_id: str) -> list[Router]:
        self.agent(agent_id)
        return [self.routers[r] for r, bound in self.l3_bindings.items() if agent_id in bound]

    def routers_hosted_on(self, host: str) -> list[str]:
        """The ids of the routers with a binding on an agent of ``host``, sorted."""
        return sorted(
            r
            for r, bound in self.l3_bindings.items()
            if any(self.agents[a].host == host for a in bound)
        )

    def ha_states(self, router_id: str) -> dict[str, str]:
        """Per-agent ha_state, with l3_hamode_db's rule for dead agents: an active binding on a
        dead agent reads ``standby`` while another agent lives, ``unknown`` when none does."""
        bound = self.l3_bindings.get(router_id, {})
        dead = {
            a
            for a in bound
            if not (self.is_alive(self.agents[a]) and self.agents[a].admin_state_up)
        }
        if not any(bound[a] == "active" for a in dead):
            return dict(bound)
        state = "unknown" if len(dead) == len(bound) else "standby"
        return {a: (state if a in dead and s == "active" else s) for a, s in bound.items()}

    # ------------------------------------------------------------------ data plane and VRRP

    def _drop_namespace(self, router_id: str, agent_id: str) -> None:
        holders = self.namespaces.get(router_id)
        if holders is None or agent_id not in holders:
            return
        del holders[agent_id]
        self.masters.get(router_id, set()).discard(agent_id)
        if not holders:
            del self.namespaces[router_id]
        self._vrrp_settle(router_id)

    def _keepalived_up(self, agent_id: str) -> bool:
        host = self.world.hosts.get(self.agents[agent_id].host)
        return host is not None and host.power_on and not host.hung

    def _partition(self, agent_id: str) -> str:
        host = self.world.hosts[self.agents[agent_id].host]
        return f"isolated:{host.name}" if host.isolated else ""

    def forwarding(self, router_id: str) -> set[str]:
        """The hosts whose data plane forwards ``router_id`` now (rules in the module doc)."""
        router = self.routers.get(router_id)
        masters = self.masters.get(router_id, set())
        out = set()
        for agent_id in self.namespaces.get(router_id, ()):
            if not self._keepalived_up(agent_id):
                continue
            if router is not None and router.ha and agent_id not in masters:
                continue
            out.add(self.agents[agent_id].host)
        return out

    def vrrp_masters(self, router_id: str) -> set[str]:
        """The agents whose keepalived is master for ``router_id`` now (the truth)."""
        self.router(router_id)
        return set(self.masters.get(router_id, set()))

    def vrrp_fault(self, router_id: str, state: str) -> None:
        """Force an HA router's VRRP to ``none`` (no master) or ``split`` (two), or ``clear``."""
        router = self.router(router_id)
        if not router.ha:
            raise NeutronError(400, "BadRequest", f"Router {router_id} is not an HA router")
        if state not in VRRP_FAULTS:
            raise BadRequest(f"unknown vrrp state {state!r}; choose from {', '.join(VRRP_FAULTS)}")
        if state == "clear":
            self.vrrp_forced.pop(router_id, None)
        else:
            self.vrrp_forced[router_id] = state
        self._vrrp_settle(router_id)

    def _vrrp_settle(self, router_id: str) -> None:
        router = self.routers.get(router_id)
        if router is None or not router.ha:
            return
        up = [a for a in self.namespaces.get(router_id, ()) if self._keepalived_up(a)]
        masters = {a for a in self.masters.get(router_id, set()) if a in up}
        forced = self.vrrp_forced.get(router_id)
        if forced == "none":
            masters = set()
        elif forced == "split":
            masters = set(up[:2])
        else:
            parts: dict[str, list[str]] = {}
            for agent_id in up:
                parts.setdefault(self._partition(agent_id), []).append(agent_id)
            for members in parts.values():
                mine = [a for a in members if a in masters]
                masters.difference_update(mine[1:])
                if not mine:
                    self._plan_promotion(router_id, members[0])
        self.masters[router_id] = masters
        self._report(router_id)

    def _plan_promotion(self, router_id: str, agent_id: str) -> None:
        if (router_id, agent_id) in self._promoting:
            return
        self._promoting.add((router_id, agent_id))

        def promote() -> None:
            self._promoting.discard((router_id, agent_id))
            if router_id in self.vrrp_forced or not self._keepalived_up(agent_id):
                return
            if agent_id not in self.namespaces.get(router_id, ()):
                return
            side = self._partition(agent_id)
            masters = self.masters.setdefault(router_id, set())
            if any(self._partition(m) == side for m in masters if self._keepalived_up(m)):
                return
            masters.add(agent_id)
            self._vrrp_settle(router_id)

        self.world.later(self.config.vrrp_failover_seconds, promote)

    def _report(self, router_id: str) -> None:
        """Beating agents report keepalived's state; the ports follow the reported master."""
        router = self.routers.get(router_id)
        bound = self.l3_bindings.get(router_id, {})
        if router is None or not router.ha:
            return
        masters = self.masters.get(router_id, set())
        for agent_id in self.namespaces.get(router_id, ()):
            if agent_id in bound and self.agents[agent_id].beating:
                bound[agent_id] = "active" if agent_id in masters else "standby"
        serving = self._served_by(router_id)
        if serving is not None:
            self._serve(router_id, serving)

    # ------------------------------------------------------------------ DHCP scheduling

    def add_network_to_agent(self, agent_id: str, network_id: str) -> None:
        self.network(network_id)
        agent = self.agent(agent_id)
        if agent.agent_type != DHCP or not agent.admin_state_up:
            msg = f"Agent {agent_id} is not a valid DHCP Agent or has been disabled."
            raise NeutronError(404, "InvalidDHCPAgent", msg)
        bound = self.dhcp_bindings.setdefault(network_id, [])
        if agent_id in bound:
            msg = f"The network {network_id} has been already hosted by the DHCP Agent {agent_id}."
            raise NeutronError(409, "NetworkHostedByDHCPAgent", msg)
        bound.append(agent_id)
        self._count(agent, "networks", +1)
        self._dhcp_port(network_id, agent)

    def remove_network_from_agent(self, agent_id: str, network_id: str) -> None:
        agent = self.agent(agent_id)
        bound = self.dhcp_bindings.get(network_id, [])
        if agent_id not in bound:
            msg = f"The network {network_id} is not hosted by the DHCP agent {agent_id}."
            raise NeutronError(409, "NetworkNotHostedByDhcpAgent", msg)
        bound.remove(agent_id)
        self._count(agent, "networks", -1)
        # Neutron keeps the port (reserved, device_id "reserved_dhcp_port") so the IP is reused.
        for port in self.device_ports(dhcp_device_id(agent.host, network_id)):
            self.set_device(port, "reserved_dhcp_port")
            port.status, port.host_id = "DOWN", ""

    def _dhcp_port(self, network_id: str, agent: Agent) -> Port:
        device_id = dhcp_device_id(agent.host, network_id)
        port = self.new_port(network_id, OWNER_DHCP, device_id, project_id="")
        port.status = "ACTIVE" if agent.beating else "DOWN"
        port.host_id = agent.host
        return port

    def dhcp_agents_of(self, network_id: str) -> list[Agent]:
        # No existence check: Neutron answers an unknown network with an empty list.
        return [self.agents[a] for a in self.dhcp_bindings.get(network_id, [])]

    def networks_on(self, agent_id: str) -> list[Network]:
        self.agent(agent_id)
        return [self.networks[n] for n, bound in self.dhcp_bindings.items() if agent_id in bound]

    @staticmethod
    def _count(agent: Agent, key: str, delta: int) -> None:
        agent.configurations[key] = int(agent.configurations.get(key, 0)) + delta

    # ------------------------------------------------------------------ creating resources

    def _live_least_loaded(self, agent_type: str, key: str) -> list[Agent]:
        """Candidates of the schedulers: alive, enabled agents, least loaded first (for L3, no
        ``dvr`` agent: those host only the distributed part, never scheduled by hand)."""
        agents = [
            a
            for a in self.agents.values()
            if a.agent_type == agent_type
            and a.admin_state_up
            and a.configurations.get("agent_mode") not in DVR_MODES
            and self.is_alive(a)
        ]
        return sorted(agents, key=lambda a: (int(a.configurations.get(key, 0)), a.host))

    def create_network(
        self, name: str, project_id: str, *, external: bool = False, shared: bool = False
    ) -> Network:
        now = self.world.clock.now()
        net = Network(id=self.new_id(), name=name, project_id=project_id, created_at=now)
        net.external, net.shared = external, shared
        self.networks[net.id] = net
        return net

    def create_subnet(
        self,
        network_id: str,
        cidr: str,
        *,
        name: str,
        project_id: str,
        gateway_ip: str | None,
        enable_dhcp: bool,
    ) -> Subnet:
        """A subnet; with DHCP on, an unhosted network goes to one live DHCP agent (Neutron's
        DhcpAgentNotifyAPI schedules on ``subnet_create_end``; dhcp_agents_per_network = 1)."""
        net = self.network(network_id)
        prefix = cidr.rsplit(".", 1)[0]
        subnet = Subnet(
            id=self.new_id(),
            name=name,
            network_id=net.id,
            project_id=project_id,
            cidr=cidr,
            gateway_ip=gateway_ip if gateway_ip is not None else f"{prefix}.1",
            created_at=self.world.clock.now(),
            enable_dhcp=enable_dhcp,
        )
        self.subnets[subnet.id] = subnet
        net.subnets.append(subnet.id)
        if enable_dhcp and not self.dhcp_bindings.get(net.id):
            for agent in self._live_least_loaded(DHCP, "networks")[:1]:
                self.add_network_to_agent(agent.id, net.id)
        return subnet

    # ------------------------------------------------------------------ ports

    def new_port(
        self, network_id: str, owner: str, device_id: str, *, project_id: str, ip: str = ""
    ) -> Port:
        net = self.networks[network_id]
        subnet = self.subnets[net.subnets[0]] if net.subnets else None
        used = self._allocated.get(network_id, 0)
        self._allocated[network_id] = used + 1
        if subnet is not None and not ip:
            prefix = subnet.cidr.rsplit(".", 1)[0]
            ip = f"{prefix}.{used + 2}"
        fixed = [{"subnet_id": subnet.id, "ip_address": ip}] if subnet is not None else []
        mac = self.world.rng.getrandbits(24)
        port = Port(
            id=self.new_id(),
            network_id=network_id,
            project_id=project_id,
            device_owner=owner,
            device_id=device_id,
            fixed_ips=fixed,
            mac_address=f"fa:16:3e:{mac >> 16:02x}:{(mac >> 8) & 255:02x}:{mac & 255:02x}",
            created_at=self.world.clock.now(),
        )
        self.ports[port.id] = port
        self.ports_by_device.setdefault(device_id, {})[port.id] = None
        return port

    def set_device(self, port: Port, device_id: str) -> None:
        """Change a port's ``device_id``, keeping the index by device in step."""
        self._unindex_port(port)
        port.device_id = device_id
        self.ports_by_device.setdefault(device_id, {})[port.id] = None

    def delete_port(self, port: Port) -> None:
        self._unindex_port(port)
        del self.ports[port.id]

    def _unindex_port(self, port: Port) -> None:
        held = self.ports_by_device.get(port.device_id)
        if held is not None:
            held.pop(port.id, None)
            if not held:
                del self.ports_by_device[port.device_id]

    def set_fip_router(self, fip: FloatingIP, router_id: str | None) -> None:
        """Change a floating IP's ``router_id``, keeping the index by router in step."""
        if fip.router_id is not None:
            held = self.fips_by_router.get(fip.router_id, {})
            held.pop(fip.id, None)
            if not held:
                self.fips_by_router.pop(fip.router_id, None)
        fip.router_id = router_id
        if router_id is not None:
            self.fips_by_router.setdefault(router_id, {})[fip.id] = None

    def add_floating_ip(self, fip: FloatingIP) -> None:
        self.floating_ips[fip.id] = fip
        if fip.router_id is not None:
            self.fips_by_router.setdefault(fip.router_id, {})[fip.id] = None


def dhcp_device_id(host: str, network_id: str) -> str:
    """``neutron.common.utils.get_dhcp_agent_device_id``."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host)}-{network_id}"
