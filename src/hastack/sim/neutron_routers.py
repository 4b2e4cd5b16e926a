"""Neutron's router API on the simulated cloud: create, update and delete routers, their
interfaces, and floating IPs, with ``neutron/db/l3_db.py``'s refusals (types and messages).

Functions over a :class:`~hastack.sim.neutron.NeutronState`, called under ``world.lock``.
Scheduling: a legacy router is bound to the least loaded live L3 agent when it gets a gateway
or its first interface; an HA router to ``max_l3_agents_per_router`` agents at creation; a
distributed router's SNAT part to one ``dvr_snat`` agent when it has a gateway.
"""

from __future__ import annotations

from typing import Any

from hastack.sim import neutron as n


def _bad(message: str, resource: str = "router") -> n.NeutronError:
    return n.NeutronError(400, "BadRequest", f"Bad {resource} request: {message}.")


def schedule(state: n.NeutronState, router: n.Router) -> None:
    """Bind an unbound router as Neutron's schedulers would (live agents, least loaded)."""
    if state.l3_bindings.get(router.id):
        return
    candidates = state._live_least_loaded(n.L3, "routers")
    if router.distributed:
        candidates = [a for a in candidates if a.configurations.get("agent_mode") == "dvr_snat"]
    count = state.config.max_l3_agents_per_router if router.ha else 1
    for agent in candidates[:count]:
        state.add_router_to_agent(agent.id, router.id)


def create_router(
    state: n.NeutronState,
    name: str,
    project_id: str,
    external_network_id: str | None,
    *,
    ha: bool = False,
    distributed: bool = False,
) -> n.Router:
    """A router; scheduled at once when it has a gateway or is HA."""
    if external_network_id is not None:
        ext = state.network(external_network_id)
        if not ext.external:
            raise _bad(f"Network {ext.id} is not an external network", "router")
    router = n.Router(
        id=state.new_id(),
        name=name,
        project_id=project_id,
        created_at=state.world.clock.now(),
        external_network_id=external_network_id,
        ha=ha,
        distributed=distributed,
    )
    state.routers[router.id] = router
    if external_network_id is not None:
        state.new_port(external_network_id, n.OWNER_GATEWAY, router.id, project_id="")
    if external_network_id is not None or ha:
        schedule(state, router)
    return router


def update_router(
    state: n.NeutronState,
    router_id: str,
    *,
    name: str | None = None,
    admin_state_up: bool | None = None,
    gateway: dict[str, Any] | None = None,
    clear_gateway: bool = False,
) -> n.Router:
    router = state.router(router_id)
    if name is not None:
        router.name = name
    if admin_state_up is not None:
        router.admin_state_up = admin_state_up
    ext = None if gateway is None else gateway.get("network_id")
    if clear_gateway or (ext is not None and ext != router.external_network_id):
        _clear_gateway(state, router)
    if ext is not None and ext != router.external_network_id:
        net = state.network(str(ext))
        if not net.external:
            raise _bad(f"Network {net.id} is not an external network")
        router.external_network_id = net.id
        port = state.new_port(net.id, n.OWNER_GATEWAY, router.id, project_id="")
        schedule(state, router)
        bound = state.l3_bindings.get(router.id, {})
        if bound:
            port.host_id = state.agents[next(iter(bound))].host
        state._refresh(router.id)
    return router


def _clear_gateway(state: n.NeutronState, router: n.Router) -> None:
    if router.external_network_id is None:
        return
    if state.router_fips(router.id):
        msg = (
            f"Gateway cannot be updated for router {router.id}, since a gateway to external "
            f"network {router.external_network_id} is required by one or more floating IPs."
        )
        raise n.NeutronError(409, "RouterExternalGatewayInUseByFloatingIp", msg)
    for port in state.router_ports(router.id):
        if port.device_owner in (n.OWNER_GATEWAY, n.OWNER_SNAT):
            state.delete_port(port)
    router.external_network_id = None


def delete_router(state: n.NeutronState, router_id: str) -> None:
    router = state.router(router_id)
    if any(p.device_owner in n.INTERFACE_OWNERS for p in state.router_ports(router_id)):
        msg = f"Router {router_id} still has ports"
        raise n.NeutronError(409, "RouterInUse", msg)
    _clear_gateway(state, router)
    for agent_id in list(state.l3_bindings.get(router_id, {})):
        agent = state.agents[agent_id]
        del state.l3_bindings[router_id][agent_id]
        state._count(agent, "routers", -1)
        if agent.beating:
            state._drop_namespace(router_id, agent_id)
    state.l3_bindings.pop(router_id, None)
    state.vrrp_forced.pop(router_id, None)
    del state.routers[router_id]


def _info(router: n.Router, port: n.Port) -> dict[str, Any]:
    subnet = port.fixed_ips[0]["subnet_id"] if port.fixed_ips else ""
    return {
        "id": router.id,
        "tenant_id": router.project_id,
        "project_id": router.project_id,
        "port_id": port.id,
        "network_id": port.network_id,
        "subnet_id": subnet,
        "subnet_ids": [subnet] if subnet else [],
    }


def add_interface(
    state: n.NeutronState, router_id: str, *, subnet_id: str | None, port_id: str | None
) -> dict[str, Any]:
    """``add_router_interface``: a port with the subnet's gateway IP (or the given port)."""
    router = state.router(router_id)
    if subnet_id and port_id:
        raise _bad("Cannot specify both subnet-id and port-id")
    if not subnet_id and not port_id:
        raise _bad("Either subnet_id or port_id must be specified")
    owner = n.OWNER_DVR_INTERFACE if router.distributed else n.OWNER_INTERFACE
    attached = {p.network_id for p in state.router_ports(router_id) if p.device_owner == owner}
    if port_id:
        port = state.port(port_id)
        if port.device_id:
            msg = (
                f"Unable to complete operation on port {port.id} for network "
                f"{port.network_id}. Port already has an attached device {port.device_id}."
            )
            raise n.NeutronError(409, "PortInUse", msg)
        if port.network_id in attached:
            raise _bad(f"Router already has a port on network {port.network_id}")
        port.device_owner = owner
        state.set_device(port, router.id)
    else:
        subnet = state.subnet(str(subnet_id))
        if subnet.network_id in attached:
            raise _bad(f"Router already has a port on subnet {subnet.id}")
        port = state.new_port(
            subnet.network_id, owner, router.id, project_id=router.project_id, ip=subnet.gateway_ip
        )
    if router.distributed and router.external_network_id is not None:
        state.new_port(port.network_id, n.OWNER_SNAT, router.id, project_id="")
    schedule(state, router)
    bound = state.l3_bindings.get(router.id, {})
    if bound:
        host = state.agents[next(iter(bound))].host
        for p in state.router_ports(router.id):
            if p.device_owner != n.OWNER_DVR_INTERFACE and not p.host_id:
                p.host_id = host
    state._refresh(router.id)
    return _info(router, port)


def remove_interface(
    state: n.NeutronState, router_id: str, *, subnet_id: str | None, port_id: str | None
) -> dict[str, Any]:
    router = state.router(router_id)
    if not subnet_id and not port_id:
        raise _bad("Either subnet_id or port_id must be specified")
    ifaces = [p for p in state.router_ports(router_id) if p.device_owner in n.INTERFACE_OWNERS]
    if port_id:
        found = [p for p in ifaces if p.id == port_id]
        if not found:
            msg = f"Router {router_id} does not have an interface with id {port_id}"
            raise n.NeutronError(404, "RouterInterfaceNotFound", msg)
    else:
        found = [p for p in ifaces if any(ip["subnet_id"] == subnet_id for ip in p.fixed_ips)]
        if not found:
            msg = f"Router {router_id} has no interface on subnet {subnet_id}"
            raise n.NeutronError(404, "RouterInterfaceNotFoundForSubnet", msg)
    port = found[0]
    for fip in state.router_fips(router_id):
        inner = state.ports.get(fip.port_id or "")
        if inner is not None and inner.network_id == port.network_id:
            subnet = port.fixed_ips[0]["subnet_id"] if port.fixed_ips else ""
            msg = (
                f"Router interface for subnet {subnet} on router {router_id} cannot be "
                "deleted, as it is required by one or more floating IPs."
            )
            raise n.NeutronError(409, "RouterInterfaceInUseByFloatingIP", msg)
    info = _info(router, port)
    for p in state.router_ports(router_id):
        if p.device_owner == n.OWNER_SNAT and p.network_id == port.network_id:
            state.delete_port(p)
    state.delete_port(port)
    return info


# ---------------------------------------------------------------------- floating IPs


def create_floating_ip(
    state: n.NeutronState, network_id: str, project_id: str, port_id: str | None
) -> n.FloatingIP:
    net = state.network(network_id)
    if not net.external:
        raise _bad(f"Network {net.id} is not a valid external network", "floatingip")
    fip_port = state.new_port(net.id, n.OWNER_FLOATING, "", project_id="")
    fip = n.FloatingIP(
        id=state.new_id(),
        project_id=project_id,
        floating_network_id=net.id,
        floating_ip_address=fip_port.fixed_ips[0]["ip_address"] if fip_port.fixed_ips else "",
        created_at=state.world.clock.now(),
    )
    state.set_device(fip_port, fip.id)
    state.add_floating_ip(fip)
    if port_id:
        associate(state, fip.id, port_id)
    return fip


def associate(state: n.NeutronState, fip_id: str, port_id: str | None) -> n.FloatingIP:
    """Point the floating IP at ``port_id`` (None: disassociate).  The router is the one with
    an interface on the port's network and a gateway on the floating IP's network."""
    fip = state.floating_ip(fip_id)
    if port_id is None:
        state.set_fip_router(fip, None)
        fip.port_id = fip.fixed_ip_address = None
        fip.status = "DOWN"
        return fip
    port = state.port(port_id)
    for other in state.floating_ips.values():
        if other.port_id == port.id and other.id != fip.id:
            fixed = port.fixed_ips[0]["ip_address"] if port.fixed_ips else ""
            msg = (
                f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) with port "
                f"{port.id} using fixed IP {fixed}, as that fixed IP already has a floating IP "
                f"on external network {fip.floating_network_id}."
            )
            raise n.NeutronError(409, "FloatingIPPortAlreadyAssociated", msg)
    router = _router_for(state, port, fip.floating_network_id)
    state.set_fip_router(fip, router.id)
    fip.port_id = port.id
    fip.fixed_ip_address = port.fixed_ips[0]["ip_address"] if port.fixed_ips else None
    fip.status = "DOWN"
    state._refresh(router.id)
    return fip


def _router_for(state: n.NeutronState, port: n.Port, external_id: str) -> n.Router:
    for router in state.routers.values():
        if router.external_network_id != external_id:
            continue
        for p in state.router_ports(router.id):
            if p.device_owner in n.INTERFACE_OWNERS and p.network_id == port.network_id:
                return router
    subnet = port.fixed_ips[0]["subnet_id"] if port.fixed_ips else ""
    msg = (
        f"External network {external_id} is not reachable from subnet {subnet}.  Therefore, "
        f"cannot associate Port {port.id} with a Floating IP."
    )
    raise n.NeutronError(404, "ExternalGatewayForFloatingIPNotFound", msg)


def delete_floating_ip(state: n.NeutronState, fip_id: str) -> None:
    fip = state.floating_ip(fip_id)
    state.set_fip_router(fip, None)
    for port in state.device_ports(fip.id):
        state.delete_port(port)
    del state.floating_ips[fip.id]
