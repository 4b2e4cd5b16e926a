"""Seed the simulated cloud's Neutron: network nodes with their agents, networks, routers.

A network node is a World host with ``compute=False``: power, hang, isolation, its BMC and its
probe port behave like any other host's, but it runs no nova-compute, so Nova, Placement and the
scheduler never see it.  Each node runs an L3 agent (``legacy``, or ``dvr_snat`` with ``dvr``),
a DHCP agent, an Open vSwitch agent and a metadata agent; with ``dvr`` every compute host also
runs an L3 agent in ``dvr`` mode and an Open vSwitch agent.  Networks get one subnet each and two
DHCP agents; routers a gateway on the external network ``public``, one interface and one floating
IP.  The first ``spec.ha_routers`` routers are HA (bound to ``max_l3_agents_per_router``
agents, the first one VRRP master); with ``dvr`` the others are distributed (their SNAT part on a
``dvr_snat`` agent).  Scheduling is least loaded first, as Neutron's ``LeastRoutersScheduler``
and ``WeightScheduler`` do.  Everything starts ACTIVE and built, as if the cloud had been
running a while.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hastack.sim import neutron as n

if TYPE_CHECKING:
    from hastack.sim.build import CloudSpec
    from hastack.sim.world import World

DHCP_AGENTS_PER_NETWORK = 2  # neutron.conf dhcp_agents_per_network is 1; HA deployments use 2+


def network_node_names(count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"network{i:0{width}d}" for i in range(1, count + 1)]


def build_network(world: World, spec: CloudSpec) -> None:
    """Add ``spec.network_nodes`` network nodes, ``spec.networks`` networks and ``spec.routers``
    routers to ``world`` (call after the compute hosts and instances are seeded)."""
    with world.lock:
        state = world.neutron
        computes = list(world.compute_hosts())
        mode = "dvr_snat" if spec.dvr else "legacy"
        for i, name in enumerate(network_node_names(spec.network_nodes)):
            host = world.add_host(
                name,
                host_ip=f"10.255.{(i >> 8) & 255}.{i & 255}",
                bmc_password=f"bmc-{world.rng.getrandbits(48):012x}",
                compute=False,
            )
            state.add_agents(host, mode)
        if spec.dvr:
            for host in computes:
                state.add_agents(host, "dvr", kinds=(n.L3, n.OVS))
        project = next((p for p, name in world.projects.items() if name == "demo"), "")
        public = _network(world, "public", "203.0.113.0/24", project=world.admin_project)
        public.external = True
        nets = [
            _network(world, f"net-{k + 1}", f"10.{k // 256}.{k % 256}.0/24", project=project)
            for k in range(spec.networks)
        ]
        for net in nets:
            for agent in _least_loaded(state, n.DHCP, "networks", DHCP_AGENTS_PER_NETWORK):
                state.add_network_to_agent(agent.id, net.id)
        servers = sorted(world.instances.values(), key=lambda i: i.number)
        for k in range(spec.routers):
            inside = nets[k % len(nets)] if nets else None
            server = servers[k % len(servers)] if servers else None
            router = n.Router(
                id=state.new_id(),
                name=f"router-{k + 1}",
                project_id=project,
                created_at=world.clock.now(),
                external_network_id=public.id,
                ha=k < spec.ha_routers,
                distributed=spec.dvr and k >= spec.ha_routers,
            )
            _router(world, router, public, inside, server)
        for port in state.ports.values():
            port.status = "ACTIVE"
        for fip in state.floating_ips.values():
            fip.status = "ACTIVE"


def _network(world: World, name: str, cidr: str, *, project: str) -> n.Network:
    state = world.neutron
    now = world.clock.now()
    net = n.Network(id=state.new_id(), name=name, project_id=project, created_at=now)
    prefix = cidr.rsplit(".", 1)[0]
    subnet = n.Subnet(
        id=state.new_id(),
        name=f"{name}-subnet",
        network_id=net.id,
        project_id=project,
        cidr=cidr,
        gateway_ip=f"{prefix}.1",
        created_at=now,
    )
    net.subnets.append(subnet.id)
    state.networks[net.id] = net
    state.subnets[subnet.id] = subnet
    return net


def _router(
    world: World,
    router: n.Router,
    public: n.Network,
    inside: n.Network | None,
    server: object | None,
) -> None:
    state = world.neutron
    project = router.project_id
    state.routers[router.id] = router
    state.new_port(public.id, n.OWNER_GATEWAY, router.id, project_id="")
    if inside is not None:
        gateway = state.subnets[inside.subnets[0]].gateway_ip
        owner = n.OWNER_DVR_INTERFACE if router.distributed else n.OWNER_INTERFACE
        state.new_port(inside.id, owner, router.id, project_id=project, ip=gateway)
        if router.distributed:
            state.new_port(inside.id, n.OWNER_SNAT, router.id, project_id="")
        device = getattr(server, "id", None) or state.new_id()
        vm_port = state.new_port(inside.id, n.OWNER_COMPUTE, device, project_id=project)
        vm_port.host_id = getattr(server, "host", None) or ""
        fip_port = state.new_port(public.id, n.OWNER_FLOATING, "", project_id="")
        fip = n.FloatingIP(
            id=state.new_id(),
            project_id=project,
            floating_network_id=public.id,
            floating_ip_address=fip_port.fixed_ips[0]["ip_address"],
            created_at=world.clock.now(),
            router_id=router.id,
            port_id=vm_port.id,
            fixed_ip_address=vm_port.fixed_ips[0]["ip_address"],
        )
        state.set_device(fip_port, fip.id)
        state.add_floating_ip(fip)
    count = state.config.max_l3_agents_per_router if router.ha else 1
    agents = _least_loaded(state, n.L3, "routers", count)
    for agent in agents:
        state.add_router_to_agent(agent.id, router.id)
        state.namespaces.setdefault(router.id, {})[agent.id] = None  # built long ago
    if agents:
        if router.ha:
            state.masters[router.id] = {agents[0].id}
        for port in state.router_ports(router.id):
            if port.device_owner != n.OWNER_DVR_INTERFACE:
                port.host_id = agents[0].host


def _least_loaded(state: n.NeutronState, agent_type: str, key: str, count: int) -> list[n.Agent]:
    agents = [
        a
        for a in state.agents.values()
        if a.agent_type == agent_type and a.configurations.get("agent_mode") not in n.DVR_MODES
    ]
    agents.sort(key=lambda a: (int(a.configurations.get(key, 0)), a.host))
    return agents[:count]
