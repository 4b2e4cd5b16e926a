"""The simulator's control endpoint: inject and undo failures while the cloud runs.

Served without authentication, on 127.0.0.1 only, like a test harness port.  The same protocol is
spoken by the real-Nova oracle used by the contract suite (tests/contract/backends/base.py).
"""

from __future__ import annotations

from typing import Any

from hastack.sim import faults
from hastack.sim.errors import BadRequest
from hastack.sim.faults import ApiFault
from hastack.sim.http.base import ApiFace, ApiRequest, Reply


class ControlFace(ApiFace):
    prefix = "/control"
    service_type = "control"
    requires_token = False

    def routes(self) -> None:
        self.route("/info", self.info)
        self.route("/hosts", self.hosts)
        self.route("/hosts/<host>", self.host)
        self.route("/hosts/<host>/fail", self.fail, ("POST",))
        self.route("/hosts/<host>/recover", self.recover, ("POST",))
        self.route("/routers/<router_id>/vrrp", self.vrrp, ("POST",))
        self.route("/routers/<router_id>/vrrp", self.show_vrrp)
        self.route("/api-faults", self.list_api_faults)
        self.route("/api-faults", self.add_api_fault, ("POST",))
        self.route("/api-faults", self.clear_api_faults, ("DELETE",))

    def info(self, req: ApiRequest) -> Any:
        cfg = self.world.config
        return {
            "backend": "sim",
            "hosts": sorted(h.name for h in self.world.compute_hosts()),
            "network_nodes": sorted(h.name for h in self.world.hosts.values() if not h.compute),
            "service_down_time": cfg.service_down_time,
            "report_interval": cfg.report_interval,
            "modes": list(faults.MODES),
            "instances": len(self.world.instances),
        }

    def _host_doc(self, name: str) -> dict[str, Any]:
        h = self.world.host(name)
        return {
            "host": h.name,
            "power": "on" if h.power_on else "off",
            "hung": h.hung,
            "isolated": h.isolated,
            "compute": h.compute,
            "compute_running": h.compute_running,
            "heartbeating": h.heartbeating,
            "service_up": self.world.service_is_up(h),
            "bmc": str(h.bmc_condition),
            "instances": len(self.world.by_host[h.name]),
            "running_vms": sum(1 for i in self.world.instances.values() if h.name in i.running_on),
        }

    def hosts(self, req: ApiRequest) -> Any:
        with self.world.lock:
            return {"hosts": [self._host_doc(n) for n in sorted(self.world.hosts)]}

    def host(self, req: ApiRequest, host: str) -> Any:
        with self.world.lock:
            return self._host_doc(host)

    def fail(self, req: ApiRequest, host: str) -> Any:
        body = req.body_dict() if req.raw.get_data() else {}
        mode = body.get("mode", "power")
        if not isinstance(mode, str):
            raise BadRequest("mode must be a string")
        agent = body.get("agent")
        if agent is not None and not isinstance(agent, str):
            raise BadRequest("agent must be a string")
        faults.fail(self.world, host, mode, agent=agent)
        return {"host": host, "mode": mode}

    def recover(self, req: ApiRequest, host: str) -> Any:
        faults.recover(self.world, host)
        return {"host": host}

    def _vrrp_doc(self, router_id: str) -> dict[str, Any]:
        st = self.world.neutron
        masters = st.vrrp_masters(router_id)
        return {
            "router": router_id,
            "forced": st.vrrp_forced.get(router_id),
            "masters": sorted(st.agents[a].host for a in masters),
            "forwarding": sorted(st.forwarding(router_id)),
        }

    def vrrp(self, req: ApiRequest, router_id: str) -> Any:
        """Force an HA router's VRRP: ``{"state": "none" | "split" | "clear"}``."""
        state = req.body_dict().get("state")
        if not isinstance(state, str):
            raise BadRequest("state must be a string")
        with self.world.lock:
            self.world.neutron.vrrp_fault(router_id, state)
            return self._vrrp_doc(router_id)

    def show_vrrp(self, req: ApiRequest, router_id: str) -> Any:
        with self.world.lock:
            return self._vrrp_doc(router_id)

    def list_api_faults(self, req: ApiRequest) -> Any:
        return {"api_faults": [vars(f) for f in self.cloud.api_faults.list()]}

    def add_api_fault(self, req: ApiRequest) -> Reply:
        body = req.body_dict()
        try:
            fault = ApiFault(
                service=str(body.get("service", "*")),
                method=str(body.get("method", "*")).upper(),
                path=str(body.get("path", "")),
                status=None if body.get("status") is None else int(body["status"]),
                latency=float(body.get("latency", 0.0)),
                count=None if body.get("count") is None else int(body["count"]),
            )
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"invalid api fault: {exc}") from None
        if fault.status is None and fault.latency == 0:
            raise BadRequest("an api fault needs a status or a latency")
        return Reply(vars(self.cloud.api_faults.add(fault)), 201)

    def clear_api_faults(self, req: ApiRequest) -> Reply:
        self.cloud.api_faults.clear()
        return Reply(None, 204)
