"""The simulated cloud's Neutron: agents on network nodes, networks, ports, routers, floating IPs.

Agents heartbeat like nova-compute does (see ``World.service_updated_at``): while the agent's
process runs on a host that is powered, not hung and not isolated, its ``heartbeat_timestamp``
advances every ``report_interval`` (30 s, Neutron's default); the moment it cannot, the timestamp
freezes and the agent reads ``alive: false`` once ``agent_down_time`` (75 s, Neutron's default)
has passed.  Nothing ticks: the timestamp is derived from the clock.

Router and DHCP scheduling follow ``neutron/db/l3_agentschedulers_db.py`` and
``neutron/db/agentschedulers_db.py``: a router may be bound to a dead agent (Neutron does not
check liveness on manual scheduling), a legacy router hosted elsewhere is a 409, a disabled or
non-L3 agent a 404.  A router's ports turn ACTIVE on the agent's host ``port_activate_seconds``
after a *live* agent picks it up (the L3 agent syncs, the OVS agent wires the ports); a dead
agent never picks it up, so they stay DOWN until it comes back.  When an agent dies the ports
keep whatever status they had: Neutron has nobody left to report them down.

All methods run under ``world.lock`` (callers of the public operations take it).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from hastack.sim.errors import CloudError

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
OWNER_GATEWAY = "network:router_gateway"
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
        world.subscribe(self._on_event)

    def new_id(self) -> str:
        return self.world.new_uuid()

    # ------------------------------------------------------------------ agents and heartbeats

    def add_agents(self, host: Host, agent_mode: str = "legacy") -> list[Agent]:
        """Start the L3, DHCP, OVS and metadata agents on ``host`` (a network node)."""
        now = self.world.clock.now()
        made = []
        for agent_type, binary, topic in AGENT_KINDS:
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
        return [a for a in self.agents.values() if a.host == host_name]

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
            for router_id, bound in self.l3_bindings.items():
                if agent.id in bound:
                    self._schedule_activation(router_id, agent)

    def _on_event(self, kind: str, fields: dict[str, Any]) -> None:
        host_name = fields.get("host")
        if not isinstance(host_name, str) or host_name not in self.world.hosts:
            return
        agents = self.host_agents(host_name)
        if kind == "power" and not fields.get("on"):
            for agent in agents:
                self._sync(agent)
                agent.running = False  # the processes died with the host
        elif kind == "power" and fields.get("on"):
            boot = self.world.config.host_boot_seconds
            self.world.later(boot, lambda: self.start_agents(host_name))
        for agent in agents:
            self._sync(agent)

    def kill_agents(self, host_name: str) -> None:
        """The ``agent-dead`` fault: every Neutron agent process on the host dies."""
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

    def router_ports(self, router_id: str) -> list[Port]:
        return [
            p
            for p in self.ports.values()
            if p.device_id == router_id and p.device_owner in (OWNER_INTERFACE, OWNER_GATEWAY)
        ]

    def router_fips(self, router_id: str) -> list[FloatingIP]:
        return [f for f in self.floating_ips.values() if f.router_id == router_id]

    # ------------------------------------------------------------------ L3 scheduling

    def add_router_to_agent(self, agent_id: str, router_id: str) -> None:
        """``add_router_to_l3_agent``: validation first, then the binding; liveness unchecked."""
        router = self.router(router_id)
        agent = self.agent(agent_id)
        if agent.agent_type != L3 or not agent.admin_state_up:
            msg = f"Agent {agent_id} is not a L3 Agent or has been disabled"
            raise NeutronError(404, "InvalidL3Agent", msg)
        mode = agent.configurations.get("agent_mode", "legacy")
        if mode in ("dvr", "dvr_no_external"):
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
        if agent.beating:
            self._schedule_activation(router_id, agent)

    def remove_router_from_agent(self, agent_id: str, router_id: str) -> None:
        agent = self.agent(agent_id)
        if agent.configurations.get("agent_mode") in ("dvr", "dvr_no_external"):
            msg = "Not allowed to manually remove a router from an agent in 'dvr' mode."
            raise NeutronError(409, "DVRL3CannotRemoveFromDvrAgent", msg)
        bound = self.l3_bindings.get(router_id, {})
        if agent_id not in bound:
            return  # Neutron deletes the (absent) binding rows and answers 204
        del bound[agent_id]
        self._count(agent, "routers", -1)
        if bound:
            if "active" not in bound.values():
                bound[next(iter(bound))] = "active"
            return
        for port in self.router_ports(router_id):
            port.status = "DOWN"
        for fip in self.router_fips(router_id):
            fip.status = "DOWN"

    def _schedule_activation(self, router_id: str, agent: Agent) -> None:
        def activate() -> None:
            if agent.id not in self.l3_bindings.get(router_id, {}) or not agent.beating:
                return
            if self.router(router_id).ha and self.ha_states(router_id).get(agent.id) != "active":
                return
            for port in self.router_ports(router_id):
                port.status, port.host_id = "ACTIVE", agent.host
            for fip in self.router_fips(router_id):
                fip.status = "ACTIVE"

        self.world.later(self.config.port_activate_seconds, activate)

    def l3_agents_of(self, router_id: str) -> list[Agent]:
        self.router(router_id)
        return [self.agents[a] for a in self.l3_bindings.get(router_id, {})]

    def routers_on(self, agent_id: str) -> list[Router]:
        self.agent(agent_id)
        return [self.routers[r] for r, bound in self.l3_bindings.items() if agent_id in bound]

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
        for port in self.ports.values():
            if port.device_id == dhcp_device_id(agent.host, network_id):
                port.device_id, port.status, port.host_id = "reserved_dhcp_port", "DOWN", ""

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
        """Candidates of the schedulers: alive, enabled agents, least loaded first."""
        agents = [
            a
            for a in self.agents.values()
            if a.agent_type == agent_type and a.admin_state_up and self.is_alive(a)
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

    def create_router(self, name: str, project_id: str, external_network_id: str | None) -> Router:
        """A legacy router; with a gateway it is scheduled at once to the live L3 agent hosting
        the fewest routers (``LeastRoutersScheduler``; Neutron schedules a new router only when
        it has a gateway, otherwise on its first interface)."""
        if external_network_id is not None:
            ext = self.network(external_network_id)
            if not ext.external:
                msg = f"Network {ext.id} is not an external network"
                raise NeutronError(400, "BadRequest", msg)
        router = Router(
            id=self.new_id(),
            name=name,
            project_id=project_id,
            created_at=self.world.clock.now(),
            external_network_id=external_network_id,
        )
        self.routers[router.id] = router
        if external_network_id is not None:
            self.new_port(external_network_id, OWNER_GATEWAY, router.id, project_id="")
            for agent in self._live_least_loaded(L3, "routers")[:1]:
                self.add_router_to_agent(agent.id, router.id)
        return router

    # ------------------------------------------------------------------ ports

    def new_port(
        self, network_id: str, owner: str, device_id: str, *, project_id: str, ip: str = ""
    ) -> Port:
        net = self.networks[network_id]
        subnet = self.subnets[net.subnets[0]] if net.subnets else None
        if subnet is not None and not ip:
            prefix = subnet.cidr.rsplit(".", 1)[0]
            used = sum(1 for p in self.ports.values() if p.network_id == network_id)
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
        return port


def dhcp_device_id(host: str, network_id: str) -> str:
    """``neutron.common.utils.get_dhcp_agent_device_id``."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host)}-{network_id}"
