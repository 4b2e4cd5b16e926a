"""Nova's admin resources: os-services, os-hypervisors, flavors and extra specs, os-aggregates,
os-availability-zone, os-server-groups, os-migrations and os-instance-actions."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from hastack.sim import extra_specs
from hastack.sim.errors import BadRequest, CloudError, Conflict, NotFound
from hastack.sim.http.base import ApiRequest, Reply, iso, paginate
from hastack.sim.model import Aggregate, Flavor, Host, ServerGroup

if TYPE_CHECKING:
    from hastack.sim.http.nova import NovaFace

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def register(face: NovaFace) -> None:
    r = Resources(face)
    add = face.route
    add("/v2.1/os-services", r.list_services)
    add("/v2.1/os-services/<service_id>", r.update_service, ("PUT",))
    add("/v2.1/os-hypervisors", r.list_hypervisors)
    add("/v2.1/os-hypervisors/detail", r.list_hypervisors_detail)
    add("/v2.1/os-hypervisors/<hyp_id>", r.show_hypervisor)
    add("/v2.1/flavors", r.list_flavors)
    add("/v2.1/flavors/detail", r.list_flavors_detail)
    add("/v2.1/flavors", r.create_flavor, ("POST",))
    add("/v2.1/flavors/<flavor_id>", r.show_flavor)
    add("/v2.1/flavors/<flavor_id>", r.delete_flavor, ("DELETE",))
    add("/v2.1/flavors/<flavor_id>/os-extra_specs", r.list_extra_specs)
    add("/v2.1/flavors/<flavor_id>/os-extra_specs", r.create_extra_specs, ("POST",))
    add("/v2.1/flavors/<flavor_id>/os-extra_specs/<key>", r.show_extra_spec)
    add("/v2.1/flavors/<flavor_id>/os-extra_specs/<key>", r.update_extra_spec, ("PUT",))
    add("/v2.1/flavors/<flavor_id>/os-extra_specs/<key>", r.delete_extra_spec, ("DELETE",))
    add("/v2.1/os-aggregates", r.list_aggregates)
    add("/v2.1/os-aggregates", r.create_aggregate, ("POST",))
    add("/v2.1/os-aggregates/<int:agg_id>", r.show_aggregate)
    add("/v2.1/os-aggregates/<int:agg_id>", r.delete_aggregate, ("DELETE",))
    add("/v2.1/os-aggregates/<int:agg_id>/action", r.aggregate_action, ("POST",))
    add("/v2.1/os-availability-zone", r.list_azs)
    add("/v2.1/os-availability-zone/detail", r.list_azs_detail)
    add("/v2.1/os-server-groups", r.list_groups)
    add("/v2.1/os-server-groups", r.create_group, ("POST",))
    add("/v2.1/os-server-groups/<group_id>", r.show_group)
    add("/v2.1/os-server-groups/<group_id>", r.delete_group, ("DELETE",))
    add("/v2.1/os-migrations", r.list_migrations)
    add("/v2.1/servers/<server_id>/os-instance-actions", r.list_actions)
    add("/v2.1/servers/<server_id>/os-instance-actions/<request_id>", r.show_action)


class Resources:
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
            hosts = [self.world.hosts[host]] if host in self.world.hosts else []
            if host is None:
                hosts = sorted(self.world.hosts.values(), key=lambda h: h.service.legacy_id)
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
            if binary != "nova-compute" or name not in self.world.hosts:
                raise NotFound(f"Host '{name}' is not mapped to any cell")
            doc: dict[str, Any] = {"host": name, "binary": binary}
            if action == "force-down":
                forced = body.get("forced_down")
                if not isinstance(forced, bool):
                    raise BadRequest("Invalid input for field/attribute forced_down.")
                if not forced:
                    self._check_for_evacuations(self.world.hosts[name])
                self.world.update_service(name, forced_down=forced)
                doc["forced_down"] = forced
                return {"service": doc}
            status = "enabled" if action == "enable" else "disabled"
            reason = body.get("disabled_reason") if action == "disable-log-reason" else None
            if action == "disable-log-reason" and not reason:
                raise BadRequest("Missing disabled reason field")
            self.world.update_service(name, status=status, disabled_reason=reason)
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
            hosts = sorted(self.world.hosts.values(), key=lambda h: h.hypervisor_legacy_id)
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
            self._uptime_rpc(list(self.world.hosts.values()))
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
                for h in self.world.hosts.values()
                if hyp_id in (h.hypervisor_id, str(h.hypervisor_legacy_id))
            ]
        if found and req.at_least("2.88"):
            self._uptime_rpc(found)
        if found:
            with self.world.lock:
                return {"hypervisor": self.hypervisor_view(req, found[0], detail=True)}
        raise NotFound(f"Hypervisor with ID '{hyp_id}' could not be found.")

    # ------------------------------------------------------------------ flavors

    def flavor_view(self, req: ApiRequest, f: Flavor, detail: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": f.id, "name": f.name, "links": self.face.link("flavors", f.id)}
        if req.at_least("2.55"):
            doc["description"] = f.description
        if not detail:
            return doc
        doc.update(
            {
                "vcpus": f.vcpus,
                "ram": f.ram,
                "disk": f.disk,
                "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
                "swap": f.swap or "",
                "os-flavor-access:is_public": f.is_public,
            }
        )
        if not req.at_least("2.102"):
            doc["rxtx_factor"] = 1.0
            doc["OS-FLV-DISABLED:disabled"] = False
        if req.at_least("2.61"):
            doc["extra_specs"] = dict(f.extra_specs)
        return doc

    def _flavors(self, req: ApiRequest, detail: bool) -> Any:
        with self.world.lock:
            flavors = sorted(self.world.flavors.values(), key=lambda f: f.id)
            return {"flavors": [self.flavor_view(req, f, detail) for f in flavors]}

    def list_flavors(self, req: ApiRequest) -> Any:
        return self._flavors(req, detail=False)

    def list_flavors_detail(self, req: ApiRequest) -> Any:
        return self._flavors(req, detail=True)

    def show_flavor(self, req: ApiRequest, flavor_id: str) -> Any:
        with self.world.lock:
            return {"flavor": self.flavor_view(req, self.world.flavor(flavor_id), detail=True)}

    def create_flavor(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-flavor-manage:create")
        spec = req.body_dict("flavor")
        try:
            name = str(spec["name"])
            vcpus, ram, disk = int(spec["vcpus"]), int(spec["ram"]), int(spec.get("disk", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"Invalid input for field/attribute flavor: {exc}") from None
        with self.world.lock:
            fid = str(spec.get("id") or self.world.new_uuid())
            if fid in self.world.flavors:
                raise Conflict(f"Flavor with ID {fid} already exists.")
            if any(f.name == name for f in self.world.flavors.values()):
                raise Conflict(f"Flavor with name {name} already exists.")
            flavor = Flavor(
                id=fid,
                name=name,
                vcpus=vcpus,
                ram=ram,
                disk=disk,
                ephemeral=int(spec.get("OS-FLV-EXT-DATA:ephemeral", 0)),
                swap=int(spec.get("swap") or 0),
                is_public=bool(spec.get("os-flavor-access:is_public", True)),
                description=spec.get("description"),
            )
            self.world.add_flavor(flavor)
            return {"flavor": self.flavor_view(req, flavor, detail=True)}

    def delete_flavor(self, req: ApiRequest, flavor_id: str) -> Reply:
        self.face.require_admin(req, "os_compute_api:os-flavor-manage:delete")
        with self.world.lock:
            self.world.flavor(flavor_id)
            del self.world.flavors[flavor_id]
        return Reply(None, 202)

    def list_extra_specs(self, req: ApiRequest, flavor_id: str) -> Any:
        with self.world.lock:
            return {"extra_specs": dict(self.world.flavor(flavor_id).extra_specs)}

    def create_extra_specs(self, req: ApiRequest, flavor_id: str) -> Any:
        self.face.require_admin(req, "os_compute_api:os-flavor-extra-specs:create")
        specs = req.body_dict("extra_specs")
        if req.at_least("2.86"):
            for key, value in specs.items():
                extra_specs.validate(str(key), str(value))
        with self.world.lock:
            flavor = self.world.flavor(flavor_id)
            flavor.extra_specs.update({str(k): str(v) for k, v in specs.items()})
            return {"extra_specs": {str(k): str(v) for k, v in specs.items()}}

    def show_extra_spec(self, req: ApiRequest, flavor_id: str, key: str) -> Any:
        with self.world.lock:
            specs = self.world.flavor(flavor_id).extra_specs
            if key not in specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            return {key: specs[key]}

    def update_extra_spec(self, req: ApiRequest, flavor_id: str, key: str) -> Any:
        body = req.body_dict()
        if list(body) != [key]:
            raise BadRequest("Request body and URI mismatch")
        if req.at_least("2.86"):
            extra_specs.validate(key, str(body[key]))
        with self.world.lock:
            self.world.flavor(flavor_id).extra_specs[key] = str(body[key])
            return {key: str(body[key])}

    def delete_extra_spec(self, req: ApiRequest, flavor_id: str, key: str) -> Reply:
        with self.world.lock:
            specs = self.world.flavor(flavor_id).extra_specs
            if key not in specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            del specs[key]
        return Reply(None, 200)

    # ------------------------------------------------------------------ os-aggregates

    def aggregate_view(self, req: ApiRequest, agg: Aggregate) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": agg.id,
            "name": agg.name,
            "availability_zone": agg.az,
            "hosts": list(agg.hosts),
            "metadata": dict(agg.metadata),
            "created_at": iso(agg.created, micro=True, z=False),
            "updated_at": iso(agg.updated, micro=True, z=False),
            "deleted_at": None,
            "deleted": False,
        }
        if req.at_least("2.41"):
            doc["uuid"] = agg.uuid
        return doc

    def _aggregate(self, agg_id: int) -> Aggregate:
        agg = self.world.aggregates.get(agg_id)
        if agg is None:
            raise NotFound(f"Aggregate {agg_id} could not be found.")
        return agg

    def list_aggregates(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-aggregates:index")
        with self.world.lock:
            aggs = sorted(self.world.aggregates.values(), key=lambda a: a.id)
            return {"aggregates": [self.aggregate_view(req, a) for a in aggs]}

    def show_aggregate(self, req: ApiRequest, agg_id: int) -> Any:
        self.face.require_admin(req, "os_compute_api:os-aggregates:show")
        with self.world.lock:
            return {"aggregate": self.aggregate_view(req, self._aggregate(agg_id))}

    def create_aggregate(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-aggregates:create")
        spec = req.body_dict("aggregate")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("Invalid input for field/attribute name.")
        az = spec.get("availability_zone")
        with self.world.lock:
            if any(a.name == name for a in self.world.aggregates.values()):
                raise Conflict(f"Aggregate {name} already exists.")
            agg_id = self.world.next_id()
            agg = Aggregate(
                id=agg_id,
                uuid=self.world.new_uuid(),
                name=name,
                az=az,
                hosts=[],
                metadata={"availability_zone": az} if az else {},
                created=self.world.clock.now(),
            )
            self.world.aggregates[agg_id] = agg
            doc = self.aggregate_view(req, agg)
            for key in ("hosts", "metadata"):
                doc.pop(key)
            return {"aggregate": doc}

    def delete_aggregate(self, req: ApiRequest, agg_id: int) -> Reply:
        self.face.require_admin(req, "os_compute_api:os-aggregates:delete")
        with self.world.lock:
            agg = self._aggregate(agg_id)
            if agg.hosts:
                raise BadRequest(
                    f"Cannot remove aggregate {agg_id}. Reason: Host aggregate is not empty."
                )
            del self.world.aggregates[agg_id]
        return Reply(None, 200)

    def aggregate_action(self, req: ApiRequest, agg_id: int) -> Any:
        self.face.require_admin(req, "os_compute_api:os-aggregates:add_host")
        body = req.body_dict()
        if len(body) != 1:
            raise BadRequest("Only one action is allowed per request.")
        action, arg = next(iter(body.items()))
        if not isinstance(arg, dict):
            raise BadRequest(f"Invalid input for field/attribute {action}.")
        with self.world.lock:
            agg = self._aggregate(agg_id)
            if action in ("add_host", "remove_host"):
                host = arg.get("host")
                if host not in self.world.hosts:
                    raise NotFound(f"Compute host {host} could not be found.")
                if action == "add_host":
                    if host in agg.hosts:
                        raise Conflict(f"Aggregate {agg_id} already has host {host}.")
                    self._check_az_move(agg, host, adding=True)
                    agg.hosts.append(host)
                else:
                    if host not in agg.hosts:
                        raise NotFound(f"Aggregate {agg_id} has no host {host}.")
                    self._check_az_move(agg, host, adding=False)
                    agg.hosts.remove(host)
                self.world.refresh_az(self.world.hosts[host])
            elif action == "set_metadata":
                meta = arg.get("metadata")
                if not isinstance(meta, dict):
                    raise BadRequest("Invalid input for field/attribute metadata.")
                for key, value in meta.items():
                    if value is None:
                        agg.metadata.pop(key, None)
                    else:
                        agg.metadata[key] = str(value)
                agg.az = agg.metadata.get("availability_zone")
                for host in agg.hosts:
                    self.world.refresh_az(self.world.hosts[host])
            else:
                raise BadRequest(f"Invalid request body: unknown action {action}")
            agg.updated = self.world.clock.now()
            return {"aggregate": self.aggregate_view(req, agg)}

    def _check_az_move(self, agg: Aggregate, host: str, *, adding: bool) -> None:
        """nova.compute.api: a host with instances may not change availability zone."""
        new_az = agg.metadata.get("availability_zone")
        if not new_az:
            return
        others = [
            a.metadata["availability_zone"]
            for a in self.world.aggregates.values()
            if a.id != agg.id and host in a.hosts and a.metadata.get("availability_zone")
        ]
        current = others[0] if others else None
        before, after = (current, new_az) if adding else (new_az, current)
        count = len(self.world.by_host[host])
        if before == after or count == 0:
            return
        verb = ("add host to", "added to") if adding else ("remove host from", "removed from")
        raise Conflict(
            f"Cannot {verb[0]} aggregate {agg.id}. Reason: The host cannot be {verb[1]} the "
            f"aggregate as the availability zone of the host would change from '{before}' to "
            f"'{after}' but the host already has {count} instance(s). Changing the AZ of an "
            "existing instance is not supported by this action. Move the instances away from "
            "this host then try again. If you need to move the instances between AZs then you "
            "can use shelve_offload and unshelve to achieve this.."
        )

    # ------------------------------------------------------------------ availability zones

    def list_azs(self, req: ApiRequest) -> Any:
        with self.world.lock:
            zones = sorted({h.az for h in self.world.hosts.values()})
            return {
                "availabilityZoneInfo": [
                    {"zoneName": z, "zoneState": {"available": True}, "hosts": None} for z in zones
                ]
            }

    def list_azs_detail(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-availability-zone:detail")
        with self.world.lock:
            zones: dict[str, dict[str, Any]] = {}
            for host in sorted(self.world.hosts.values(), key=lambda h: h.name):
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

    # ------------------------------------------------------------------ server groups

    def group_view(self, req: ApiRequest, g: ServerGroup) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": g.id,
            "name": g.name,
            "members": [m for m in g.members if m in self.world.instances],
            "metadata": {},
        }
        if req.at_least("2.64"):
            doc["policy"] = g.policy
            doc["rules"] = dict(g.rules)
            doc.pop("metadata")
        else:
            doc["policies"] = [g.policy]
        if req.at_least("2.13"):
            doc["project_id"] = g.project_id
            doc["user_id"] = g.user_id
        return doc

    def _group(self, group_id: str) -> ServerGroup:
        g = self.world.server_groups.get(group_id)
        if g is None:
            raise NotFound(f"Instance group {group_id} could not be found.")
        return g

    def list_groups(self, req: ApiRequest) -> Any:
        all_projects = req.args.get("all_projects") is not None and self.face.is_admin(req)
        with self.world.lock:
            groups = [
                g
                for g in self.world.server_groups.values()
                if all_projects or req.token is None or g.project_id == req.token.project_id
            ]
            return {"server_groups": [self.group_view(req, g) for g in groups]}

    def show_group(self, req: ApiRequest, group_id: str) -> Any:
        with self.world.lock:
            return {"server_group": self.group_view(req, self._group(group_id))}

    def create_group(self, req: ApiRequest) -> Any:
        spec = req.body_dict("server_group")
        name = spec.get("name")
        if req.at_least("2.64"):
            policy = spec.get("policy")
        else:
            policies = spec.get("policies") or []
            policy = policies[0] if isinstance(policies, list) and len(policies) == 1 else None
        allowed = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
        if not isinstance(name, str) or policy not in allowed:
            raise BadRequest(f"Invalid input for field/attribute policy. Value: {policy}.")
        token = req.token
        with self.world.lock:
            g = ServerGroup(
                id=self.world.new_uuid(),
                name=name,
                policy=policy,
                project_id=token.project_id if token else "",
                user_id=token.user_id if token else "",
                rules=dict(spec.get("rules") or {}),
            )
            self.world.server_groups[g.id] = g
            return {"server_group": self.group_view(req, g)}

    def delete_group(self, req: ApiRequest, group_id: str) -> Reply:
        with self.world.lock:
            self._group(group_id)
            del self.world.server_groups[group_id]
        return Reply(None, 204)

    # ------------------------------------------------------------------ migrations, actions

    def list_migrations(self, req: ApiRequest) -> Any:
        self.face.require_admin(req, "os_compute_api:os-migrations:index")
        args = req.args
        with self.world.lock:
            migs = sorted(
                self.world.migrations.values(), key=lambda m: (m.created, m.id), reverse=True
            )
            kind = args.get("migration_type")
            host = args.get("host") or args.get("source_compute")
            status = args.get("status")
            instance = args.get("instance_uuid")
            out = []
            for m in migs:
                if kind and m.migration_type != kind:
                    continue
                if host and host not in (m.source_compute, m.dest_compute):
                    continue
                if status and m.status != status:
                    continue
                if instance and m.instance_id != instance:
                    continue
                out.append(m)
            if req.at_least("2.59"):
                out, _more = paginate(out, req, key=lambda m: m.uuid)
            return {"migrations": [self.migration_view(req, m) for m in out]}

    def migration_view(self, req: ApiRequest, m: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": m.id,
            "source_compute": m.source_compute,
            "source_node": m.source_compute,
            "dest_compute": m.dest_compute,
            "dest_node": m.dest_compute,
            "dest_host": self.world.hosts[m.dest_compute].host_ip
            if m.dest_compute in self.world.hosts
            else None,
            "status": m.status,
            "instance_uuid": m.instance_id,
            "old_instance_type_id": int(m.old_flavor_id) if m.old_flavor_id.isdigit() else 0,
            "new_instance_type_id": int(m.new_flavor_id) if m.new_flavor_id.isdigit() else 0,
            "created_at": iso(m.created, micro=True, z=False),
            "updated_at": iso(m.updated, micro=True, z=False),
        }
        if req.at_least("2.23"):
            doc["migration_type"] = m.migration_type
        if req.at_least("2.59"):
            doc["uuid"] = m.uuid
        if req.at_least("2.80"):
            doc["project_id"] = m.project_id
            doc["user_id"] = m.user_id
        return doc

    def action_view(self, req: ApiRequest, a: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "action": a.action,
            "instance_uuid": a.instance_id,
            "request_id": a.request_id,
            "user_id": a.user_id,
            "project_id": a.project_id,
            "start_time": iso(a.start_time, micro=True, z=False),
            "message": a.message,
        }
        if req.at_least("2.58"):
            doc["updated_at"] = iso(a.updated, micro=True, z=False)
        return doc

    def list_actions(self, req: ApiRequest, server_id: str) -> Any:
        with self.world.lock:
            self.world.instance(server_id)
            actions = list(reversed(self.world.actions.get(server_id, [])))
            return {"instanceActions": [self.action_view(req, a) for a in actions]}

    def show_action(self, req: ApiRequest, server_id: str, request_id: str) -> Any:
        with self.world.lock:
            self.world.instance(server_id)
            for a in self.world.actions.get(server_id, []):
                if a.request_id == request_id:
                    doc = self.action_view(req, a)
                    doc["events"] = []
                    return {"instanceAction": doc}
        raise NotFound(f"Action for request_id {request_id} on instance {server_id} not found")
