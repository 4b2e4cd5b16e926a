"""Nova's view of compute hosts: os-services, os-hypervisors, os-availability-zone."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from hastack.sim.errors import BadRequest, CloudError, NotFound
from hastack.sim.http.base import ApiRequest, iso, paginate
from hastack.sim.model import Host

if TYPE_CHECKING:
    from hastack.sim.http.nova import NovaFace

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def register(face: NovaFace) -> None:
    r = HostResources(face)
    add = face.route
    add("/v2.1/os-services", r.list_services)
    add("/v2.1/os-services/<service_id>", r.update_service, ("PUT",))
    add("/v2.1/os-hypervisors", r.list_hypervisors)
    add("/v2.1/os-hypervisors/detail", r.list_hypervisors_detail)
    add("/v2.1/os-hypervisors/<hyp_id>", r.show_hypervisor)
    add("/v2.1/os-availability-zone", r.list_azs)
    add("/v2.1/os-availability-zone/detail", r.list_azs_detail)


class HostResources:
    def __init__(self, face: NovaFace) -> None:
        self.face = face
        self.world = face.world

    # ------------------------------------------------------------------ os-services

    def service_view(self, req: ApiRequest, host: Host) -> dict[str, Any]:
        svc = host.service
        updated = self.world.service_updated_at(host)
        up = self.world.service_is_up(host, updated)
        doc: dict[str, Any] = {
            "id": svc.id if req.at_least("2.53") else svc.legacy_id,
            "binary": svc.binary,
            "host": host.name,
            "zone": host.az,
            "status": svc.status,
            "state": "up" if up else "down",
            "updated_at": iso(updated, micro=True, z=False),
            "disabled_reason": svc.disabled_reason,
        }
        if req.at_least("2.11"):
            doc["forced_down"] = svc.forced_down
        return doc

    def list_services(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-services:list")
        host = req.args.get("host")
        binary = req.args.get("binary")
        with self.world.lock:
            hosts = [h for h in (self.world.hosts.get(host or ""),) if h and h.compute]
            if host is None:
                hosts = sorted(self.world.compute_hosts(), key=lambda h: h.service.legacy_id)
            if binary not in (None, "nova-compute"):
                hosts = []
            docs = [
                self.control_service_view(req, svc)
                for svc in self.world.control_services
                if host in (None, svc.host) and binary in (None, svc.binary)
            ]
            docs += [self.service_view(req, h) for h in hosts]
            return {"services": docs}

    def control_service_view(self, req: ApiRequest, svc: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": svc.id if req.at_least("2.53") else svc.legacy_id,
            "binary": svc.binary,
            "host": svc.host,
            "zone": "internal",
            "status": svc.status,
            "state": "up",
            "updated_at": iso(self.world.control_service_updated_at(svc), micro=True, z=False),
            "disabled_reason": svc.disabled_reason,
        }
        if req.at_least("2.11"):
            doc["forced_down"] = svc.forced_down
        return doc

    def update_service(self, req: ApiRequest, service_id: str) -> Any:
        self.face.require_admin(req, "os_compute_api:os-services:update")
        body = req.body_dict()
        if not req.at_least("2.53"):
            return self._legacy_service_action(req, service_id, body)
        if not _UUID_RE.match(service_id):
            raise BadRequest(f"Invalid uuid {service_id}")
        unknown = set(body) - {"status", "disabled_reason", "forced_down"}
        if unknown:
            raise BadRequest(
                "Additional properties are not allowed "
                f"({', '.join(sorted(unknown))} was unexpected)"
            )
        with self.world.lock:
            for svc in self.world.control_services:
                if svc.id == service_id:
                    raise BadRequest(
                        f"Updating a {svc.binary} service is not supported. "
                        "Only nova-compute services can be updated."
                    )
            host = self.world.service_by_id(service_id)
            status = body.get("status")
            if status is not None and status not in ("enabled", "disabled"):
                raise BadRequest(f"Invalid input for field/attribute status. Value: {status}.")
            if status == "enabled" and body.get("disabled_reason"):
                raise BadRequest("Specifying 'disabled_reason' with status 'enabled' is invalid.")
            forced = body.get("forced_down")
            if forced is not None and not isinstance(forced, bool):
                raise BadRequest(f"Invalid input for field/attribute forced_down. Value: {forced}.")
            if status is None and forced is None:
                raise BadRequest(
                    "No updates were requested. "
                    "Fields 'status' or 'forced_down' should be specified."
                )
            if forced is False:
                self._check_for_evacuations(host)
            self.world.update_service(
                host.name,
                status=status,
                disabled_reason=body.get("disabled_reason"),
                forced_down=forced,
            )
            return {"service": self.service_view(req, host)}

    def _check_for_evacuations(self, host: Host) -> None:
        for mig in self.world.migrations.values():
            if (
                mig.source_compute == host.name
                and mig.migration_type == "evacuation"
                and mig.status == "done"
            ):
                raise BadRequest(
                    f"Unable to force up host {host.name} as `done` evacuation migration records "
                    "remain associated with the host. Ensure the compute service has been "
                    "restarted, allowing these records to move to `completed` before retrying "
                    "this request."
                )

    def _legacy_service_action(self, req: ApiRequest, action: str, body: dict[str, Any]) -> Any:
        """PUT /os-services/{enable,disable,disable-log-reason,force-down} before 2.53."""
        name, binary = body.get("host"), body.get("binary")
        if action not in ("enable", "disable", "disable-log-reason", "force-down"):
            raise NotFound("Unknown action")
        if action == "force-down" and not req.at_least("2.11"):
            raise NotFound("Unknown action")
        with self.world.lock:
            found = self.world.hosts.get(name) if isinstance(name, str) else None
            if binary != "nova-compute" or found is None or not found.compute:
                raise NotFound(f"Host '{name}' is not mapped to any cell")
            doc: dict[str, Any] = {"host": name, "binary": binary}
            if action == "force-down":
                forced = body.get("forced_down")
                if not isinstance(forced, bool):
                    raise BadRequest("Invalid input for field/attribute forced_down.")
                if not forced:
                    self._check_for_evacuations(found)
                self.world.update_service(found.name, forced_down=forced)
                doc["forced_down"] = forced
                return {"service": doc}
            status = "enabled" if action == "enable" else "disabled"
            reason = body.get("disabled_reason") if action == "disable-log-reason" else None
            if action == "disable-log-reason" and not reason:
                raise BadRequest("Missing disabled reason field")
            self.world.update_service(found.name, status=status, disabled_reason=reason)
            doc["status"] = status
            if reason:
                doc["disabled_reason"] = reason
            return {"service": doc}

    # ------------------------------------------------------------------ os-hypervisors

    def hypervisor_view(self, req: ApiRequest, host: Host, detail: bool) -> dict[str, Any]:
        w = self.world
        hid: Any = host.hypervisor_id if req.at_least("2.53") else host.hypervisor_legacy_id
        doc: dict[str, Any] = {
            "id": hid,
            "hypervisor_hostname": host.name,
            "state": "up" if w.service_is_up(host) else "down",
            "status": host.service.status,
        }
        if detail:
            doc.update(
                {
                    "hypervisor_type": "QEMU",
                    "hypervisor_version": 8002002,
                    "host_ip": host.host_ip,
                    "service": {
                        "host": host.name,
                        "id": host.service.id if req.at_least("2.53") else host.service.legacy_id,
                        "disabled_reason": host.service.disabled_reason,
                    },
                }
            )
            if req.at_least("2.88"):
                doc["uptime"] = None
            else:
                used = w.usage[host.name]
                doc.update(
                    {
                        "vcpus": host.vcpus,
                        "memory_mb": host.memory_mb,
                        "local_gb": host.disk_gb,
                        "vcpus_used": used.vcpus,
                        "memory_mb_used": used.memory_mb + 512,
                        "local_gb_used": used.disk_gb,
                        "free_ram_mb": host.memory_mb - used.memory_mb - 512,
                        "free_disk_gb": host.disk_gb - used.disk_gb,
                        "running_vms": len(w.by_host[host.name]),
                        "current_workload": 0,
                        "disk_available_least": host.disk_gb - used.disk_gb,
                        "cpu_info": "{}",
                    }
                )
        if req.at_least("2.53") and req.args.get("with_servers") in ("true", "True", "1"):
            doc["servers"] = [
                {"uuid": i, "name": w.instances[i].instance_name} for i in w.by_host[host.name]
            ]
        return doc

    def _hypervisors(self, req: ApiRequest, detail: bool) -> Any:
        self.face.require_admin(req, "os_compute_api:os-hypervisors:list")
        pattern = req.args.get("hypervisor_hostname_pattern")
        with self.world.lock:
            hosts = sorted(self.world.compute_hosts(), key=lambda h: h.hypervisor_legacy_id)
            if pattern:
                hosts = [h for h in hosts if pattern in h.name]
                if not hosts:
                    raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
            key = (
                (lambda h: h.hypervisor_id)
                if req.at_least("2.53")
                else (lambda h: str(h.hypervisor_legacy_id))
            )
            page, more = paginate(hosts, req, key=key) if req.at_least("2.33") else (hosts, False)
            body: dict[str, Any] = {
                "hypervisors": [self.hypervisor_view(req, h, detail) for h in page]
            }
            if more and page:
                tail = "os-hypervisors/detail" if detail else "os-hypervisors"
                body["hypervisors_links"] = [
                    {
                        "rel": "next",
                        "href": f"{self.face.public_url}/v2.1/{tail}"
                        f"?limit={len(page)}&marker={key(page[-1])}",
                    }
                ]
            return body

    def list_hypervisors(self, req: ApiRequest) -> Any:
        return self._hypervisors(req, detail=False)

    def list_hypervisors_detail(self, req: ApiRequest) -> Any:
        if req.at_least("2.88"):
            self._uptime_rpc(list(self.world.compute_hosts()))
        return self._hypervisors(req, detail=True)

    def _uptime_rpc(self, hosts: list[Host]) -> None:
        """From 2.88 Nova asks every compute it believes up for its uptime over RPC. A host that
        died but still reads up never answers: the call waits rpc_response_timeout and the
        request fails with a 500 (nova/api/openstack/compute/hypervisors.py)."""
        with self.world.lock:
            silent = [h for h in hosts if self.world.service_is_up(h) and not h.heartbeating]
        if not silent:
            return
        time.sleep(self.world.config.rpc_response_timeout)
        err = CloudError(
            "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and "
            "attach the Nova API log if possible.\n"
            "<class 'oslo_messaging.exceptions.MessagingTimeout'>"
        )
        raise err

    def show_hypervisor(self, req: ApiRequest, hyp_id: str) -> Any:
        self.face.require_admin(req, "os_compute_api:os-hypervisors:show")
        with self.world.lock:
            found = [
                h
                for h in self.world.compute_hosts()
                if hyp_id in (h.hypervisor_id, str(h.hypervisor_legacy_id))
            ]
        if found and req.at_least("2.88"):
            self._uptime_rpc(found)
        if found:
            with self.world.lock:
                return {"hypervisor": self.hypervisor_view(req, found[0], detail=True)}
        raise NotFound(f"Hypervisor with ID '{hyp_id}' could not be found.")

    # ------------------------------------------------------------------ availability zones

    def list_azs(self, req: ApiRequest) -> Any:
        with self.world.lock:
            zones = sorted({h.az for h in self.world.compute_hosts()})
            return {
                "availabilityZoneInfo": [
                    {"zoneName": z, "zoneState": {"available": True}, "hosts": None} for z in zones
                ]
            }

    def list_azs_detail(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-availability-zone:detail")
        with self.world.lock:
            zones: dict[str, dict[str, Any]] = {}
            for host in sorted(self.world.compute_hosts(), key=lambda h: h.name):
                svc = host.service
                zones.setdefault(host.az, {})[host.name] = {
                    "nova-compute": {
                        "available": self.world.service_is_up(host),
                        "active": svc.status == "enabled",
                        "updated_at": iso(self.world.service_updated_at(host), micro=True, z=False),
                    }
                }
            internal: dict[str, Any] = {}
            for svc in self.world.control_services:
                internal.setdefault(svc.host, {})[svc.binary] = {
                    "available": True,
                    "active": True,
                    "updated_at": iso(
                        self.world.control_service_updated_at(svc), micro=True, z=False
                    ),
                }
            info = [{"zoneName": "internal", "zoneState": {"available": True}, "hosts": internal}]
            info += [
                {"zoneName": z, "zoneState": {"available": True}, "hosts": hosts}
                for z, hosts in sorted(zones.items())
            ]
            return {"availabilityZoneInfo": info}
