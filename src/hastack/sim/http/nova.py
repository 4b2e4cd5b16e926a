"""Nova 2.1 (microversions 2.1 to 2.104): versions, servers and server actions.

The other compute resources (services, hypervisors, flavors, aggregates, availability zones,
server groups, migrations, instance actions) are in :mod:`hastack.sim.http.nova_resources`.
Fields, status codes and messages follow Nova 34 (``nova/api/openstack/compute``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from hastack.sim import servers
from hastack.sim.errors import BadRequest, CloudError, Conflict, Forbidden, NotFound
from hastack.sim.http import nova_resources
from hastack.sim.http.base import ApiFace, ApiRequest, Reply, iso, page_limit
from hastack.sim.model import Instance, VmState

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 104)
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


class NotAcceptable(CloudError):
    status = 406
    nova_key = "computeFault"


class NovaFace(ApiFace):
    prefix = "/compute"
    service_type = "compute"

    def routes(self) -> None:
        self.route("/", self.versions)
        self.route("/v2.1", self.version)
        self.route("/v2.1/servers", self.list_servers)
        self.route("/v2.1/servers/detail", self.list_servers_detail)
        self.route("/v2.1/servers", self.create_server, ("POST",))
        self.route("/v2.1/servers/<server_id>", self.show_server)
        self.route("/v2.1/servers/<server_id>", self.delete_server, ("DELETE",))
        self.route("/v2.1/servers/<server_id>/action", self.server_action, ("POST",))
        self.route("/v2.1/servers/<server_id>/metadata", self.server_metadata)
        self.route("/v2.1/servers/<server_id>/metadata", self.update_metadata, ("POST",))
        self.route("/v2.1/servers/<server_id>/metadata", self.replace_metadata, ("PUT",))
        self.route("/v2.1/servers/<server_id>/metadata/<key>", self.show_metadata_item)
        self.route("/v2.1/servers/<server_id>/metadata/<key>", self.set_metadata_item, ("PUT",))
        self.route(
            "/v2.1/servers/<server_id>/metadata/<key>", self.delete_metadata_item, ("DELETE",)
        )
        nova_resources.register(self)

    # ------------------------------------------------------------------ protocol

    def error_body(self, exc: CloudError) -> Any:
        return {exc.nova_key: {"code": exc.status, "message": exc.message}}

    def negotiate(self, req: ApiRequest) -> None:
        raw = None
        header = req.headers.get("OpenStack-API-Version")
        if header:
            parts = header.split()
            if len(parts) == 2 and parts[0].lower() == "compute":
                raw = parts[1]
        if raw is None:
            raw = req.headers.get("X-OpenStack-Nova-API-Version")
        if raw is None:
            req.microversion = MIN_VERSION
            return
        if raw.lower() == "latest":
            req.microversion = MAX_VERSION
            return
        m = _VERSION_RE.match(raw.strip())
        if not m:
            raise BadRequest(
                f"API Version String {raw} is of invalid format. "
                "Must be of format MajorNum.MinorNum."
            )
        version = (int(m.group(1)), int(m.group(2)))
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise NotAcceptable(
                f"Version {raw} is not supported by the API. Minimum is 2.1 and maximum is 2.104."
            )
        req.microversion = version

    def response_headers(self, req: ApiRequest) -> dict[str, str]:
        if req.microversion == (0, 0):
            return {}
        v = f"{req.microversion[0]}.{req.microversion[1]}"
        return {
            "OpenStack-API-Version": f"compute {v}",
            "X-OpenStack-Nova-API-Version": v,
            "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
        }

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": "2.104",
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.public_url}/v2.1/"}],
            "media-types": [
                {
                    "base": "application/json",
                    "type": "application/vnd.openstack.compute+json;version=2.1",
                }
            ],
        }

    def versions(self, req: ApiRequest) -> Any:
        return {"versions": [self._version_doc()]}

    def version(self, req: ApiRequest) -> Any:
        return {"version": self._version_doc()}

    def link(self, collection: str, ident: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.public_url}/v2.1/{collection}/{ident}"},
            {"rel": "bookmark", "href": f"{self.public_url}/{collection}/{ident}"},
        ]

    def is_admin(self, req: ApiRequest) -> bool:
        return req.token is not None and "admin" in req.token.roles

    def require_admin(self, req: ApiRequest, policy: str) -> None:
        """Nova's default policy for admin-only APIs, with its 403 message."""
        if not self.is_admin(req):
            raise Forbidden(f"Policy doesn't allow {policy} to be performed.")

    # ------------------------------------------------------------------ views

    def server_view(self, req: ApiRequest, inst: Instance, detail: bool = True) -> dict[str, Any]:
        if not detail:
            return {"id": inst.id, "name": inst.name, "links": self.link("servers", inst.id)}
        w = self.world
        host = w.hosts.get(inst.host or "")
        host_id = ""
        if inst.host:
            host_id = hashlib.sha224((inst.project_id + inst.host).encode()).hexdigest()
        doc: dict[str, Any] = {
            "id": inst.id,
            "name": inst.name,
            "status": inst.status,
            "tenant_id": inst.project_id,
            "user_id": inst.user_id,
            "metadata": dict(inst.metadata),
            "hostId": host_id,
            "image": ""
            if inst.volume_backed
            else {"id": inst.image_id, "links": self.link("images", inst.image_id)},
            "flavor": self.embedded_flavor(req, inst),
            "created": iso(inst.created),
            "updated": iso(inst.updated),
            "addresses": {},
            "accessIPv4": "",
            "accessIPv6": "",
            "links": self.link("servers", inst.id),
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": inst.az,
            "config_drive": "",
            "key_name": None,
            "OS-SRV-USG:launched_at": iso(inst.launched_at, micro=True, z=False),
            "OS-SRV-USG:terminated_at": None,
            "OS-EXT-STS:task_state": inst.task_state,
            "OS-EXT-STS:vm_state": str(inst.vm_state),
            "OS-EXT-STS:power_state": inst.power_state,
            "os-extended-volumes:volumes_attached": (
                [{"id": f"vol-{inst.id}", "delete_on_termination": False}]
                if inst.volume_backed
                else []
            ),
            "security_groups": [{"name": "default"}],
        }
        if inst.status in ("ACTIVE", "BUILD", "REBUILD"):
            doc["progress"] = 0
        if self.is_admin(req):
            doc["OS-EXT-SRV-ATTR:host"] = inst.host
            doc["OS-EXT-SRV-ATTR:hypervisor_hostname"] = inst.host
            doc["OS-EXT-SRV-ATTR:instance_name"] = inst.instance_name
            if req.at_least("2.3"):
                doc["OS-EXT-SRV-ATTR:hostname"] = inst.name
                doc["OS-EXT-SRV-ATTR:reservation_id"] = f"r-{inst.id[:8]}"
                doc["OS-EXT-SRV-ATTR:launch_index"] = 0
                doc["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
                doc["OS-EXT-SRV-ATTR:kernel_id"] = ""
                doc["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
                doc["OS-EXT-SRV-ATTR:user_data"] = None
            if req.at_least("2.16"):
                doc["host_status"] = self.host_status(inst) if host is not None else ""
        if req.at_least("2.9"):
            doc["locked"] = inst.locked
        if req.at_least("2.19"):
            doc["description"] = None
        if req.at_least("2.26"):
            doc["tags"] = []
        if req.at_least("2.63"):
            doc["trusted_image_certificates"] = None
        if req.at_least("2.71"):
            doc["server_groups"] = [inst.server_group] if inst.server_group else []
        if req.at_least("2.73"):
            doc["locked_reason"] = inst.locked_reason
        if req.at_least("2.96"):
            doc["pinned_availability_zone"] = inst.requested_az
        if inst.vm_state == VmState.ERROR and inst.fault:
            doc["fault"] = {"code": 500, "created": iso(inst.updated), "message": inst.fault}
        return doc

    def host_status(self, inst: Instance) -> str:
        """nova.compute.api.API.get_instance_host_status."""
        host = self.world.hosts[inst.host or ""]
        if host.service.forced_down:
            return "DOWN"
        if host.service.status == "disabled":
            return "MAINTENANCE"
        return "UP" if self.world.service_is_up(host) else "UNKNOWN"

    def embedded_flavor(self, req: ApiRequest, inst: Instance) -> dict[str, Any]:
        f = inst.flavor
        if not req.at_least("2.47"):
            return {"id": f.id, "links": self.link("flavors", f.id)}
        doc: dict[str, Any] = {
            "vcpus": f.vcpus,
            "ram": f.ram,
            "disk": f.disk,
            "ephemeral": f.ephemeral,
            "swap": f.swap,
            "original_name": f.name,
        }
        if self.is_admin(req):
            doc["extra_specs"] = dict(f.extra_specs)
        return doc

    # ------------------------------------------------------------------ servers

    def _filtered(self, req: ApiRequest, marker: str | None, limit: int) -> list[Instance]:
        args = req.args
        admin = self.is_admin(req)
        all_projects = args.get("all_tenants") is not None or args.get("all_projects") is not None
        if all_projects and not admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed."
            )
        project_id = args.get("project_id") or args.get("tenant_id")
        if not (admin and all_projects) and project_id is None:
            project_id = req.token.project_id if req.token else None
        if (
            project_id is not None
            and not admin
            and req.token
            and project_id != req.token.project_id
        ):
            project_id = req.token.project_id
        host = args.get("host") if admin else None
        if host is not None and host not in self.world.hosts:
            return []
        status = args.get("status")
        name = args.get("name")
        name_re = re.compile(name) if name else None
        vm_state = args.get("vm_state")

        def keep(inst: Instance) -> bool:
            if status is not None and inst.status != status.upper():
                return False
            if vm_state is not None and str(inst.vm_state) != vm_state:
                return False
            return not (name_re is not None and not name_re.search(inst.name))

        predicate = keep if (status or name_re or vm_state) else None
        return self.world.list_instances(
            host=host, project_id=project_id, predicate=predicate, marker=marker, limit=limit
        )

    def _list(self, req: ApiRequest, detail: bool) -> Any:
        limit = page_limit(req)
        with self.world.lock:
            page = self._filtered(req, marker=req.args.get("marker"), limit=limit)
            body: dict[str, Any] = {"servers": [self.server_view(req, i, detail) for i in page]}
        if limit and len(page) == limit:
            params = {k: v for k, v in req.args.items() if k != "marker"}
            params["marker"] = page[-1].id
            query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
            tail = "servers/detail" if detail else "servers"
            body["servers_links"] = [
                {"rel": "next", "href": f"{self.public_url}/v2.1/{tail}?{query}"}
            ]
        return body

    def list_servers(self, req: ApiRequest) -> Any:
        return self._list(req, detail=False)

    def list_servers_detail(self, req: ApiRequest) -> Any:
        return self._list(req, detail=True)

    def _instance(self, req: ApiRequest, server_id: str) -> Instance:
        inst = self.world.instance(server_id)
        if not self.is_admin(req) and req.token and inst.project_id != req.token.project_id:
            raise NotFound(f"Instance {server_id} could not be found.")
        return inst

    def show_server(self, req: ApiRequest, server_id: str) -> Any:
        with self.world.lock:
            return {"server": self.server_view(req, self._instance(req, server_id))}

    def server_metadata(self, req: ApiRequest, server_id: str) -> Any:
        with self.world.lock:
            return {"metadata": dict(self._instance(req, server_id).metadata)}

    def _metadata_body(self, req: ApiRequest) -> dict[str, str]:
        meta = req.body_dict("metadata")
        for key, value in meta.items():
            if not isinstance(value, str) or not 1 <= len(key) <= 255 or len(value) > 255:
                raise BadRequest(f"Invalid input for field/attribute metadata. Value: {meta}.")
        return {str(k): str(v) for k, v in meta.items()}

    def update_metadata(self, req: ApiRequest, server_id: str) -> Any:
        meta = self._metadata_body(req)
        with self.world.lock:
            inst = self._instance(req, server_id)
            inst.metadata.update(meta)
            self.world.touch(inst)
            return {"metadata": dict(inst.metadata)}

    def replace_metadata(self, req: ApiRequest, server_id: str) -> Any:
        meta = self._metadata_body(req)
        with self.world.lock:
            inst = self._instance(req, server_id)
            inst.metadata = meta
            self.world.touch(inst)
            return {"metadata": dict(inst.metadata)}

    def show_metadata_item(self, req: ApiRequest, server_id: str, key: str) -> Any:
        with self.world.lock:
            inst = self._instance(req, server_id)
            if key not in inst.metadata:
                raise NotFound("Metadata item was not found")
            return {"meta": {key: inst.metadata[key]}}

    def set_metadata_item(self, req: ApiRequest, server_id: str, key: str) -> Any:
        body = req.body_dict("meta")
        if list(body) != [key]:
            raise BadRequest("Request body and URI mismatch")
        with self.world.lock:
            inst = self._instance(req, server_id)
            inst.metadata[key] = str(body[key])
            self.world.touch(inst)
            return {"meta": {key: inst.metadata[key]}}

    def delete_metadata_item(self, req: ApiRequest, server_id: str, key: str) -> Reply:
        with self.world.lock:
            inst = self._instance(req, server_id)
            if key not in inst.metadata:
                raise NotFound("Metadata item was not found")
            del inst.metadata[key]
            self.world.touch(inst)
        return Reply(None, 204)

    def create_server(self, req: ApiRequest) -> Reply:
        body = req.body_dict()
        spec = body.get("server")
        if not isinstance(spec, dict):
            raise BadRequest(
                "Invalid input for field/attribute server. Value: None. "
                "'server' is a required property"
            )
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(
                "Invalid input for field/attribute name. Value: None. 'name' is a required property"
            )
        flavor_ref = str(spec.get("flavorRef", "")).rstrip("/").rsplit("/", 1)[-1]
        image_ref = str(spec.get("imageRef") or "").rstrip("/").rsplit("/", 1)[-1]
        bdm = spec.get("block_device_mapping_v2") or []
        volume_backed = not image_ref and any(
            isinstance(b, dict) and b.get("boot_index") in (0, "0") for b in bdm
        )
        hints = body.get("OS-SCH-HNT:scheduler_hints") or body.get("os:scheduler_hints") or {}
        host = spec.get("host")
        if host is not None and not req.at_least("2.74"):
            raise BadRequest("Additional properties are not allowed ('host' was unexpected)")
        if not self.is_admin(req) and (host or ":" in str(spec.get("availability_zone", ""))):
            raise CloudError(
                "Policy doesn't allow compute:servers:create:forced_host to be performed."
            )
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise BadRequest("Invalid input for field/attribute metadata.")
        token = req.token
        assert token is not None
        inst = servers.create_server(
            self.world,
            name=name,
            flavor_id=flavor_ref,
            image_id=image_ref or None,
            project_id=token.project_id,
            user_id=token.user_id,
            metadata={str(k): str(v) for k, v in metadata.items()},
            host=host,
            availability_zone=spec.get("availability_zone"),
            server_group=hints.get("group") if isinstance(hints, dict) else None,
            volume_backed=volume_backed,
        )
        doc = {
            "id": inst.id,
            "links": self.link("servers", inst.id),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
            "adminPass": "sim-admin-pass",
        }
        return Reply(
            {"server": doc}, 202, {"Location": f"{self.public_url}/v2.1/servers/{inst.id}"}
        )

    def delete_server(self, req: ApiRequest, server_id: str) -> Reply:
        with self.world.lock:
            self._instance(req, server_id)
            servers.delete_server(self.world, server_id)
        return Reply(None, 204)

    # ------------------------------------------------------------------ actions

    def server_action(self, req: ApiRequest, server_id: str) -> Any:
        body = req.body_dict()
        if len(body) != 1:
            raise BadRequest("There is either no or more than one action in the request body.")
        action, arg = next(iter(body.items()))
        with self.world.lock:
            inst = self._instance(req, server_id)
            handler = _ACTIONS.get(action)
            if handler is None:
                raise NotFound("The resource could not be found.")
            return handler(self, req, inst, arg)

    def _evacuate(self, req: ApiRequest, inst: Instance, arg: Any) -> Any:
        self.require_admin(req, "os_compute_api:os-evacuate")
        if not isinstance(arg, dict):
            raise BadRequest("Invalid input for field/attribute evacuate.")
        host = arg.get("host")
        force = False
        if req.at_least("2.29"):
            force = bool(arg.get("force", False))
            if force and not host:
                raise BadRequest("Can't force to a non-provided destination")
        elif "force" in arg:
            raise BadRequest("Additional properties are not allowed ('force' was unexpected)")
        if not req.at_least("2.14") and "onSharedStorage" not in arg:
            raise BadRequest(
                "Invalid input for field/attribute evacuate. "
                "'onSharedStorage' is a required property"
            )
        target_state = VmState.STOPPED if req.at_least("2.95") else None
        servers.evacuate_server(
            self.world, inst.id, host=host, force=force, target_state=target_state
        )
        if req.at_least("2.14"):
            return Reply(None, 200)
        return {"adminPass": "sim-admin-pass"}

    def _stop(self, req: ApiRequest, inst: Instance, arg: Any) -> Reply:
        self._check_locked(req, inst, "stop")
        servers.stop_server(self.world, inst.id)
        return Reply(None, 202)

    def _start(self, req: ApiRequest, inst: Instance, arg: Any) -> Reply:
        self._check_locked(req, inst, "start")
        servers.start_server(self.world, inst.id)
        return Reply(None, 202)

    def _check_locked(self, req: ApiRequest, inst: Instance, action: str) -> None:
        # nova.compute.api.check_instance_lock: admins may act on a locked server.
        if inst.locked and not self.is_admin(req):
            raise Conflict(f"Instance {inst.id} is locked")

    def _lock(self, req: ApiRequest, inst: Instance, arg: Any) -> Reply:
        reason = (
            arg.get("locked_reason") if isinstance(arg, dict) and req.at_least("2.73") else None
        )
        by = "admin" if self.is_admin(req) else "owner"
        servers.lock_server(self.world, inst.id, reason, by)
        return Reply(None, 202)

    def _unlock(self, req: ApiRequest, inst: Instance, arg: Any) -> Reply:
        if inst.locked_by == "admin" and not self.is_admin(req):
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override "
                "to be performed."
            )
        servers.unlock_server(self.world, inst.id)
        return Reply(None, 202)

    def _reset_state(self, req: ApiRequest, inst: Instance, arg: Any) -> Reply:
        self.require_admin(req, "os_compute_api:os-admin-actions:reset_state")
        state = arg.get("state") if isinstance(arg, dict) else None
        if state not in ("active", "error"):
            raise BadRequest(
                f"Invalid input for field/attribute state. Value: {state}. "
                f"'{state}' is not one of ['active', 'error']"
            )
        servers.reset_state(self.world, inst.id, state)
        return Reply(None, 202)


_ACTIONS = {
    "evacuate": NovaFace._evacuate,
    "os-stop": NovaFace._stop,
    "os-start": NovaFace._start,
    "lock": NovaFace._lock,
    "unlock": NovaFace._unlock,
    "os-resetState": NovaFace._reset_state,
}
