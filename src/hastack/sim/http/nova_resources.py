"""Nova's flavors and extra specs, os-server-groups, os-migrations, os-instance-actions;
and the registration of every compute resource beside servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hastack.sim import extra_specs
from hastack.sim.errors import BadRequest, Conflict, NotFound
from hastack.sim.http import nova_aggregates, nova_hosts
from hastack.sim.http.base import ApiRequest, Reply, iso, paginate
from hastack.sim.model import Flavor, ServerGroup

if TYPE_CHECKING:
    from hastack.sim.http.nova import NovaFace


def register(face: NovaFace) -> None:
    nova_hosts.register(face)
    nova_aggregates.register(face)
    r = Resources(face)
    add = face.route
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
            host = args.get("host")  # either end of the migration, as in Nova
            source = args.get("source_compute")  # the source only
            status = args.get("status")
            instance = args.get("instance_uuid")
            out = []
            for m in migs:
                if kind and m.migration_type != kind:
                    continue
                if host and host not in (m.source_compute, m.dest_compute):
                    continue
                if source and m.source_compute != source:
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
