"""Neutron 2.0: agents and their router / network scheduling, networks, subnets, ports, routers,
floating IPs.

Shapes follow neutron-lib's API definitions as openstacksdk reads them; the scheduling rules and
refusals are :mod:`hastack.sim.neutron`'s.  Any query parameter naming a field filters on it
(repeat it for "any of"), as Neutron's do; ``limit``/``marker`` page with a ``<collection>_links``
next link.  Agent APIs are admin only (Neutron's default policy); a member sees its own project's
resources plus shared and external networks, and no ``binding:*`` fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Response

from hastack.sim import neutron as n
from hastack.sim import neutron_routers as routers
from hastack.sim.errors import CloudError
from hastack.sim.http.base import ApiFace, ApiRequest, Reply, iso, paginate

_PAGING = ("limit", "marker", "fields", "sort_key", "sort_dir", "page_reverse")


def _agent_time(ts: float) -> str | None:
    """Agents' timestamps read ``2026-01-01 00:00:00`` (no T, no zone) in Neutron's API."""
    text = iso(ts, z=False)
    return text.replace("T", " ") if text else None


class NeutronFace(ApiFace):
    prefix = "/networking"
    service_type = "network"

    def routes(self) -> None:
        add = self.route
        add("/", self.versions)
        add("/v2.0", self.resources)
        add("/v2.0/agents", self.list_agents)
        add("/v2.0/agents/<agent_id>", self.show_agent)
        add("/v2.0/agents/<agent_id>", self.update_agent, ("PUT",))
        add("/v2.0/agents/<agent_id>/l3-routers", self.agent_routers)
        add("/v2.0/agents/<agent_id>/l3-routers", self.add_router, ("POST",))
        add("/v2.0/agents/<agent_id>/l3-routers/<router_id>", self.remove_router, ("DELETE",))
        add("/v2.0/agents/<agent_id>/dhcp-networks", self.agent_networks)
        add("/v2.0/agents/<agent_id>/dhcp-networks", self.add_network, ("POST",))
        add("/v2.0/agents/<agent_id>/dhcp-networks/<network_id>", self.remove_network, ("DELETE",))
        add("/v2.0/routers/<router_id>/l3-agents", self.router_agents)
        add("/v2.0/networks/<network_id>/dhcp-agents", self.network_agents)
        for collection, view in (
            ("networks", self.network_view),
            ("subnets", self.subnet_view),
            ("ports", self.port_view),
            ("routers", self.router_view),
            ("floatingips", self.fip_view),
        ):
            add(f"/v2.0/{collection}", self._lister(collection, view))
            add(f"/v2.0/{collection}/<item_id>", self._shower(collection, view))
        add("/v2.0/networks", self.create_network, ("POST",))
        add("/v2.0/subnets", self.create_subnet, ("POST",))
        add("/v2.0/routers", self.create_router, ("POST",))
        add("/v2.0/routers/<router_id>", self.update_router, ("PUT",))
        add("/v2.0/routers/<router_id>", self.delete_router, ("DELETE",))
        add("/v2.0/routers/<router_id>/add_router_interface", self.add_interface, ("PUT",))
        add("/v2.0/routers/<router_id>/remove_router_interface", self.remove_interface, ("PUT",))
        add("/v2.0/floatingips", self.create_fip, ("POST",))
        add("/v2.0/floatingips/<fip_id>", self.update_fip, ("PUT",))
        add("/v2.0/floatingips/<fip_id>", self.delete_fip, ("DELETE",))

    # ------------------------------------------------------------------ framework

    def error_body(self, exc: CloudError) -> Any:
        kind = exc.kind if isinstance(exc, n.NeutronError) else _KINDS.get(exc.status, "Error")
        return {"NeutronError": {"type": kind, "message": exc.message, "detail": ""}}

    def render(self, req: ApiRequest, reply: Reply) -> Response:
        response = super().render(req, reply)
        if reply.status == 201 and reply.body is None:  # Neutron answers a bare JSON null
            response.set_data(b"null")
            response.content_type = "application/json"
        return response

    @property
    def state(self) -> n.NeutronState:
        return self.world.neutron

    def is_admin(self, req: ApiRequest) -> bool:
        return req.token is not None and "admin" in req.token.roles

    def require_admin(self, req: ApiRequest, action: str) -> None:
        if not self.is_admin(req):
            raise n.NeutronError(403, "PolicyNotAuthorized", f"({action}) is disallowed by policy")

    def visible(self, req: ApiRequest, doc: dict[str, Any]) -> bool:
        if self.is_admin(req) or req.token is None:
            return True
        if doc.get("shared") or doc.get("router:external"):
            return True
        return doc.get("project_id") in ("", req.token.project_id)

    def listing(self, req: ApiRequest, key: str, docs: Iterable[dict[str, Any]]) -> Any:
        """Filter by any field named in the query, then page with limit/marker."""
        wanted = {k: {_text(v) for v in req.args.getlist(k)} for k in req.args if k not in _PAGING}
        out = [
            d
            for d in docs
            if self.visible(req, d)
            and all(k not in d or _text(d[k]) in vs for k, vs in wanted.items())
        ]
        page, more = paginate(out, req, key=lambda d: str(d["id"]))
        body: dict[str, Any] = {key: page}
        if more and "limit" in req.args:
            href = f"{self.public_url}/v2.0/{key}?limit={req.args['limit']}&marker={page[-1]['id']}"
            body[f"{key}_links"] = [{"rel": "next", "href": href}]
        return body

    # ------------------------------------------------------------------ versions

    def versions(self, req: ApiRequest) -> Any:
        link = [{"rel": "self", "href": f"{self.public_url}/v2.0/"}]
        return {"versions": [{"id": "v2.0", "status": "CURRENT", "links": link}]}

    def resources(self, req: ApiRequest) -> Any:
        names = ("agent", "network", "subnet", "port", "router", "floatingip")
        return {
            "resources": [{"name": name, "collection": f"{name}s", "links": []} for name in names]
        }

    # ------------------------------------------------------------------ views

    def agent_view(self, agent: n.Agent, ha_state: str | None = None) -> dict[str, Any]:
        st = self.state
        return {
            "id": agent.id,
            "agent_type": agent.agent_type,
            "binary": agent.binary,
            "topic": agent.topic,
            "host": agent.host,
            "admin_state_up": agent.admin_state_up,
            "alive": st.is_alive(agent),
            "availability_zone": agent.availability_zone,
            "configurations": dict(agent.configurations),
            "created_at": _agent_time(agent.created_at),
            "started_at": _agent_time(agent.started_at),
            "heartbeat_timestamp": _agent_time(st.heartbeat_at(agent)),
            "description": None,
            "resources_synced": None,
            "resource_versions": {},
            "ha_state": ha_state,
            "ha_chassis_priority": None,
        }

    def network_view(self, req: ApiRequest, net: n.Network) -> dict[str, Any]:
        return {
            "id": net.id,
            "name": net.name,
            "project_id": net.project_id,
            "tenant_id": net.project_id,
            "status": net.status,
            "admin_state_up": True,
            "shared": net.shared,
            "router:external": net.external,
            "subnets": list(net.subnets),
            "mtu": 1450,
            "availability_zones": ["nova"],
            "created_at": iso(net.created_at),
            "updated_at": iso(net.created_at),
        }

    def subnet_view(self, req: ApiRequest, sub: n.Subnet) -> dict[str, Any]:
        prefix = sub.cidr.rsplit(".", 1)[0]
        return {
            "id": sub.id,
            "name": sub.name,
            "network_id": sub.network_id,
            "project_id": sub.project_id,
            "tenant_id": sub.project_id,
            "cidr": sub.cidr,
            "ip_version": 4,
            "gateway_ip": sub.gateway_ip,
            "enable_dhcp": sub.enable_dhcp,
            "allocation_pools": [{"start": f"{prefix}.2", "end": f"{prefix}.254"}],
            "created_at": iso(sub.created_at),
            "updated_at": iso(sub.created_at),
        }

    def port_view(self, req: ApiRequest, port: n.Port) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": port.id,
            "name": port.name,
            "network_id": port.network_id,
            "project_id": port.project_id,
            "tenant_id": port.project_id,
            "device_owner": port.device_owner,
            "device_id": port.device_id,
            "fixed_ips": [dict(ip) for ip in port.fixed_ips],
            "mac_address": port.mac_address,
            "status": port.status,
            "admin_state_up": True,
            "created_at": iso(port.created_at),
            "updated_at": iso(port.created_at),
        }
        if self.is_admin(req):
            doc["binding:host_id"] = port.host_id
            doc["binding:vif_type"] = "ovs" if port.host_id else "unbound"
            doc["binding:vnic_type"] = "normal"
        return doc

    def router_view(self, req: ApiRequest, router: n.Router) -> dict[str, Any]:
        gateway = None
        if router.external_network_id:
            ips = [
                dict(ip)
                for p in self.state.router_ports(router.id)
                if p.device_owner == n.OWNER_GATEWAY
                for ip in p.fixed_ips
            ]
            gateway = {
                "network_id": router.external_network_id,
                "enable_snat": True,
                "external_fixed_ips": ips,
            }
        doc: dict[str, Any] = {
            "id": router.id,
            "name": router.name,
            "project_id": router.project_id,
            "tenant_id": router.project_id,
            "status": router.status,
            "admin_state_up": router.admin_state_up,
            "external_gateway_info": gateway,
            "availability_zones": ["nova"],
            "created_at": iso(router.created_at),
            "updated_at": iso(router.created_at),
        }
        if self.is_admin(req):
            doc["distributed"] = router.distributed
            doc["ha"] = router.ha
        return doc

    def fip_view(self, req: ApiRequest, fip: n.FloatingIP) -> dict[str, Any]:
        return {
            "id": fip.id,
            "project_id": fip.project_id,
            "tenant_id": fip.project_id,
            "floating_network_id": fip.floating_network_id,
            "floating_ip_address": fip.floating_ip_address,
            "fixed_ip_address": fip.fixed_ip_address,
            "router_id": fip.router_id,
            "port_id": fip.port_id,
            "status": fip.status,
            "created_at": iso(fip.created_at),
            "updated_at": iso(fip.created_at),
        }

    def _table(self, collection: str) -> dict[str, Any]:
        st = self.state
        tables: dict[str, dict[str, Any]] = {
            "networks": st.networks,
            "subnets": st.subnets,
            "ports": st.ports,
            "routers": st.routers,
            "floatingips": st.floating_ips,
        }
        return tables[collection]

    def _candidates(self, req: ApiRequest, collection: str) -> list[Any]:
        """The rows a listing must look at: the indexed ones when the query names ``device_id``
        (ports) or ``router_id`` (floating IPs), every row otherwise."""
        st = self.state
        if collection == "ports" and "device_id" in req.args:
            ids = dict.fromkeys(req.args.getlist("device_id"))
            return [p for d in ids for p in st.device_ports(d)]
        if collection == "floatingips" and "router_id" in req.args:
            ids = dict.fromkeys(req.args.getlist("router_id"))
            return [f for r in ids for f in st.router_fips(r)]
        return list(self._table(collection).values())

    def _lister(self, collection: str, view: Callable[[ApiRequest, Any], dict[str, Any]]) -> Any:
        def handler(req: ApiRequest) -> Any:
            with self.world.lock:
                items = self._candidates(req, collection)
                return self.listing(req, collection, (view(req, i) for i in items))

        return handler

    def _shower(self, collection: str, view: Callable[[ApiRequest, Any], dict[str, Any]]) -> Any:
        singular = collection[:-1]
        kind = _NOT_FOUND[collection]

        def handler(req: ApiRequest, item_id: str) -> Any:
            with self.world.lock:
                item = self._table(collection).get(item_id)
                doc = view(req, item) if item is not None else None
                if doc is None or not self.visible(req, doc):
                    label = "Floating IP" if collection == "floatingips" else singular.title()
                    msg = f"{label} {item_id} could not be found."
                    raise n.NeutronError(404, kind, msg)
                return {singular: doc}

        return handler

    # ------------------------------------------------------------------ creating resources

    def _project(self, req: ApiRequest, body: dict[str, Any]) -> str:
        own = req.token.project_id if req.token is not None else ""
        wanted = body.get("project_id") or body.get("tenant_id") or own
        return str(wanted) if self.is_admin(req) else own

    def create_network(self, req: ApiRequest) -> Any:
        body = req.body_dict("network")
        external = bool(body.get("router:external", False))
        if external:
            self.require_admin(req, "create_network:router:external")
        with self.world.lock:
            net = self.state.create_network(
                str(body.get("name", "")),
                self._project(req, body),
                external=external,
                shared=bool(body.get("shared", False)),
            )
            return Reply({"network": self.network_view(req, net)}, 201)

    def create_subnet(self, req: ApiRequest) -> Any:
        body = req.body_dict("subnet")
        cidr = body.get("cidr")
        if not isinstance(cidr, str) or not cidr.endswith("/24"):
            raise n.NeutronError(400, "BadRequest", f"Invalid input: cidr {cidr!r} (sim: /24)")
        gateway = body.get("gateway_ip")
        with self.world.lock:
            sub = self.state.create_subnet(
                str(body.get("network_id")),
                cidr,
                name=str(body.get("name", "")),
                project_id=self._project(req, body),
                gateway_ip=None if gateway is None else str(gateway),
                enable_dhcp=bool(body.get("enable_dhcp", True)),
            )
            return Reply({"subnet": self.subnet_view(req, sub)}, 201)

    def create_router(self, req: ApiRequest) -> Any:
        body = req.body_dict("router")
        gateway = body.get("external_gateway_info") or {}
        if not isinstance(gateway, dict):
            raise n.NeutronError(400, "HTTPBadRequest", "Invalid input for external_gateway_info")
        ext = gateway.get("network_id")
        ha, distributed = body.get("ha"), body.get("distributed")
        for key, value in (("ha", ha), ("distributed", distributed)):
            if value is not None:
                self.require_admin(req, f"create_router:{key}")
                if not isinstance(value, bool):
                    msg = (
                        f"Invalid input for {key}. Reason: '{value}' is not a valid boolean value."
                    )
                    raise n.NeutronError(400, "HTTPBadRequest", msg)
        with self.world.lock:
            router = routers.create_router(
                self.state,
                str(body.get("name", "")),
                self._project(req, body),
                None if ext is None else str(ext),
                ha=bool(ha),
                distributed=bool(distributed),
            )
            return Reply({"router": self.router_view(req, router)}, 201)

    def _own_router(self, req: ApiRequest, router_id: str) -> n.Router:
        router = self.state.router(router_id)
        if not self.visible(req, {"project_id": router.project_id}):
            raise n.NeutronError(404, "RouterNotFound", f"Router {router_id} could not be found")
        return router

    def update_router(self, req: ApiRequest, router_id: str) -> Any:
        body = req.body_dict("router")
        up = body.get("admin_state_up")
        if up is not None and not isinstance(up, bool):
            msg = f"Invalid input for admin_state_up. Reason: '{up}' is not a valid boolean value."
            raise n.NeutronError(400, "HTTPBadRequest", msg)
        gateway = body.get("external_gateway_info", ...)
        if gateway is not ... and gateway is not None and not isinstance(gateway, dict):
            raise n.NeutronError(400, "HTTPBadRequest", "Invalid input for external_gateway_info")
        with self.world.lock:
            self._own_router(req, router_id)
            router = routers.update_router(
                self.state,
                router_id,
                name=None if body.get("name") is None else str(body["name"]),
                admin_state_up=up,
                gateway=gateway if isinstance(gateway, dict) and gateway else None,
                clear_gateway=gateway is None or gateway == {},
            )
            return {"router": self.router_view(req, router)}

    def delete_router(self, req: ApiRequest, router_id: str) -> Any:
        with self.world.lock:
            self._own_router(req, router_id)
            routers.delete_router(self.state, router_id)
        return Reply(None, 204)

    def _interface_args(self, req: ApiRequest) -> dict[str, str | None]:
        body = req.body_dict()
        subnet, port = body.get("subnet_id"), body.get("port_id")
        return {
            "subnet_id": None if subnet is None else str(subnet),
            "port_id": None if port is None else str(port),
        }

    def add_interface(self, req: ApiRequest, router_id: str) -> Any:
        args = self._interface_args(req)
        with self.world.lock:
            self._own_router(req, router_id)
            return routers.add_interface(self.state, router_id, **args)

    def remove_interface(self, req: ApiRequest, router_id: str) -> Any:
        args = self._interface_args(req)
        with self.world.lock:
            self._own_router(req, router_id)
            return routers.remove_interface(self.state, router_id, **args)

    def _own_fip(self, req: ApiRequest, fip_id: str) -> n.FloatingIP:
        fip = self.state.floating_ip(fip_id)
        if not self.visible(req, {"project_id": fip.project_id}):
            raise n.NeutronError(
                404, "FloatingIPNotFound", f"Floating IP {fip_id} could not be found"
            )
        return fip

    def create_fip(self, req: ApiRequest) -> Any:
        body = req.body_dict("floatingip")
        port = body.get("port_id")
        with self.world.lock:
            fip = routers.create_floating_ip(
                self.state,
                str(body.get("floating_network_id")),
                self._project(req, body),
                None if port is None else str(port),
            )
            return Reply({"floatingip": self.fip_view(req, fip)}, 201)

    def update_fip(self, req: ApiRequest, fip_id: str) -> Any:
        body = req.body_dict("floatingip")
        if "port_id" not in body:
            raise n.NeutronError(400, "HTTPBadRequest", "Invalid input: port_id is required")
        port = body.get("port_id")
        with self.world.lock:
            self._own_fip(req, fip_id)
            fip = routers.associate(self.state, fip_id, None if port is None else str(port))
            return {"floatingip": self.fip_view(req, fip)}

    def delete_fip(self, req: ApiRequest, fip_id: str) -> Any:
        with self.world.lock:
            self._own_fip(req, fip_id)
            routers.delete_floating_ip(self.state, fip_id)
        return Reply(None, 204)

    # ------------------------------------------------------------------ agents

    def list_agents(self, req: ApiRequest) -> Any:
        if not self.is_admin(req):  # Neutron filters the list by policy: a member sees none
            return {"agents": []}
        with self.world.lock:
            agents = sorted(self.state.agents.values(), key=lambda a: (a.host, a.agent_type))
            return self.listing(req, "agents", (self.agent_view(a) for a in agents))

    def show_agent(self, req: ApiRequest, agent_id: str) -> Any:
        self.require_admin(req, "get_agent")
        with self.world.lock:
            return {"agent": self.agent_view(self.state.agent(agent_id))}

    def update_agent(self, req: ApiRequest, agent_id: str) -> Any:
        self.require_admin(req, "update_agent")
        body = req.body_dict("agent")
        up = body.get("admin_state_up")
        if not isinstance(up, bool):
            msg = f"Invalid input for admin_state_up. Reason: '{up}' is not a valid boolean value."
            raise n.NeutronError(400, "HTTPBadRequest", msg)
        with self.world.lock:
            return {"agent": self.agent_view(self.state.set_admin_state(agent_id, up))}

    def agent_routers(self, req: ApiRequest, agent_id: str) -> Any:
        self.require_admin(req, "get_l3-routers")
        with self.world.lock:
            return {"routers": [self.router_view(req, r) for r in self.state.routers_on(agent_id)]}

    def add_router(self, req: ApiRequest, agent_id: str) -> Any:
        self.require_admin(req, "create_l3-router")
        router_id = req.body_dict().get("router_id")
        with self.world.lock:
            self.state.add_router_to_agent(agent_id, str(router_id))
        return Reply(None, 201)

    def remove_router(self, req: ApiRequest, agent_id: str, router_id: str) -> Any:
        self.require_admin(req, "delete_l3-router")
        with self.world.lock:
            self.state.remove_router_from_agent(agent_id, router_id)
        return Reply(None, 204)

    def router_agents(self, req: ApiRequest, router_id: str) -> Any:
        self.require_admin(req, "get_l3-agents")
        with self.world.lock:
            router = self.state.router(router_id)
            states = self.state.ha_states(router_id) if router.ha else {}
            agents = self.state.l3_agents_of(router_id)
            return {"agents": [self.agent_view(a, states.get(a.id)) for a in agents]}

    def agent_networks(self, req: ApiRequest, agent_id: str) -> Any:
        self.require_admin(req, "get_dhcp-networks")
        with self.world.lock:
            nets = self.state.networks_on(agent_id)
            return {"networks": [self.network_view(req, x) for x in nets]}

    def add_network(self, req: ApiRequest, agent_id: str) -> Any:
        self.require_admin(req, "create_dhcp-network")
        network_id = req.body_dict().get("network_id")
        with self.world.lock:
            self.state.add_network_to_agent(agent_id, str(network_id))
        return Reply(None, 201)

    def remove_network(self, req: ApiRequest, agent_id: str, network_id: str) -> Any:
        self.require_admin(req, "delete_dhcp-network")
        with self.world.lock:
            self.state.remove_network_from_agent(agent_id, network_id)
        return Reply(None, 204)

    def network_agents(self, req: ApiRequest, network_id: str) -> Any:
        self.require_admin(req, "get_dhcp-agents")
        with self.world.lock:
            return {"agents": [self.agent_view(a) for a in self.state.dhcp_agents_of(network_id)]}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value).lower()


_KINDS = {400: "HTTPBadRequest", 403: "HTTPForbidden", 404: "HTTPNotFound", 409: "HTTPConflict"}
_NOT_FOUND = {
    "networks": "NetworkNotFound",
    "subnets": "SubnetNotFound",
    "ports": "PortNotFound",
    "routers": "RouterNotFound",
    "floatingips": "FloatingIPNotFound",
}
