"""Nova's os-aggregates, and the availability zones they give hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hastack.sim.errors import BadRequest, Conflict, NotFound
from hastack.sim.http.base import ApiRequest, Reply, iso
from hastack.sim.model import Aggregate

if TYPE_CHECKING:
    from hastack.sim.http.nova import NovaFace


def register(face: NovaFace) -> None:
    r = AggregateResources(face)
    add = face.route
    add("/v2.1/os-aggregates", r.list_aggregates)
    add("/v2.1/os-aggregates", r.create_aggregate, ("POST",))
    add("/v2.1/os-aggregates/<int:agg_id>", r.show_aggregate)
    add("/v2.1/os-aggregates/<int:agg_id>", r.delete_aggregate, ("DELETE",))
    add("/v2.1/os-aggregates/<int:agg_id>/action", r.aggregate_action, ("POST",))


class AggregateResources:
    def __init__(self, face: NovaFace) -> None:
        self.face = face
        self.world = face.world

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
