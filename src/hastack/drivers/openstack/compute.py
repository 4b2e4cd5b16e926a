"""The compute port over openstacksdk: Nova, Placement and Glance read as raw JSON.

Every call goes through :class:`~hastack.drivers.openstack.connection.RawApi` on the sdk's own
keystoneauth adapters, with an explicit microversion: bulk reads never build sdk resources, and
no vendor exception escapes.  Choices the port leaves open:

- ``workload``: destinations are every other nova-compute host; their free capacity comes from
  one ``GET /allocation_candidates`` (Placement 1.29: provider summaries carry capacity and
  usage of every resource class), ``free = capacity - used``.  A host Placement offers no
  candidate on (no room for 1 VCPU + 1 MB) is listed with zero free capacity.  An image that
  cannot be read leaves that instance's ``image_properties`` empty (logged at WARNING), which
  the recovery policy treats fail-closed.  Group members on other hosts are looked up one by
  one, at most ``MAX_MEMBER_LOOKUPS`` per call.
- ``evacuation_status`` of a server that no longer exists (404) is phase NONE with status "".
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import openstack

from hastack.domain.instances import FlavorInfo, HostCapacity, InstanceInfo, ServerGroupInfo
from hastack.drivers.openstack.connection import PAGE, HttpRefusal, RawApi, open_proxy
from hastack.errors import PermanentError
from hastack.ports.compute import (
    PENDING_CLEANUP,
    ComputeService,
    EvacuationPhase,
    EvacuationStatus,
    Workload,
    evacuation_status,
)

log = logging.getLogger(__name__)

SERVICES_MV = "2.53"  # service ids are uuids; forced_down is shown and settable
LIST_MV_MIN = "2.47"  # servers embed their flavor (sizes and extra specs)
LIST_MV_MAX = "2.96"  # pinned_availability_zone
EVACUATE_MV_MIN = "2.29"
EVACUATE_MV_MAX = "2.94"  # from 2.95 Nova leaves an evacuated ACTIVE server SHUTOFF
MIGRATIONS_MV = "2.23"  # migration_type; below 2.59 the list is not paginated
GROUPS_MV = "2.64"  # policy as one string
AGGREGATES_MV = "2.41"
PLACEMENT_MV = "1.29"
MAX_MEMBER_LOOKUPS = 200
_RESOURCES = ("VCPU", "MEMORY_MB", "DISK_GB")


def parse_time(value: str | None) -> float | None:
    """Nova's ``updated_at`` (ISO 8601, no zone meaning UTC) as seconds since the epoch."""
    if not value:
        return None
    stamp = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _mv_tuple(mv: str) -> tuple[int, int]:
    major, _, minor = mv.partition(".")
    return int(major), int(minor)


class NovaCompute:
    """:class:`~hastack.ports.compute.ComputePort` over an openstacksdk connection (admin).

    ``evacuate_microversion`` pins the evacuate call's microversion; by default it is the
    highest the cloud supports between 2.29 and 2.94, so an ACTIVE server stays ACTIVE.
    ``timeout`` bounds every HTTP request, in seconds.
    """

    def __init__(
        self,
        conn: openstack.connection.Connection,
        *,
        evacuate_microversion: str | None = None,
        timeout: float = 30,
    ) -> None:
        # Building a proxy authenticates and reads the catalog: a refused password or an
        # unreachable Keystone comes out as a hastack error, not a keystoneauth one.
        self.nova = RawApi(open_proxy(conn, "compute", "nova"), "nova", timeout)
        self.placement = RawApi(open_proxy(conn, "placement", "placement"), "placement", timeout)
        self.glance = RawApi(open_proxy(conn, "image", "glance"), "glance", timeout)
        if evacuate_microversion is not None:
            _mv_tuple(evacuate_microversion)  # ValueError now rather than at the first evacuation
        self._evacuate_mv = evacuate_microversion
        self._list_mv: str | None = None
        self._service_ids: dict[str, str] = {}

    # ------------------------------------------------------------------ reads

    def services(self) -> list[ComputeService]:
        data = self.nova.get("/os-services?binary=nova-compute", SERVICES_MV) or {}
        out = []
        for row in data.get("services") or []:
            if row.get("binary") != "nova-compute":
                continue
            self._service_ids[row["host"]] = str(row["id"])
            forced = bool(row.get("forced_down"))
            out.append(
                ComputeService(
                    host=row["host"],
                    up=row.get("state") == "up" and not forced,
                    updated_at=parse_time(row.get("updated_at")),
                    forced_down=forced,
                    enabled=row.get("status") == "enabled",
                    disabled_reason=row.get("disabled_reason") or "",
                    zone=row.get("zone") or "",
                )
            )
        return out

    def workload(self, host: str) -> Workload:
        mv = self._server_list_mv()
        rows = list(self.nova.pages(f"/servers/detail?all_tenants=1&host={host}", "servers", mv=mv))
        groups, group_of = self._server_groups({r["id"] for r in rows})
        images: dict[str, dict[str, str] | None] = {}
        instances = tuple(self._instance(r, host, group_of, images) for r in rows)
        instance_hosts = {i.id: i.host for i in instances}
        self._member_hosts(groups.values(), instance_hosts)
        services = self.services()
        aggregates = self._host_aggregates()
        free = self._free_capacity()
        destinations = tuple(
            HostCapacity(
                host=s.host,
                availability_zone=s.zone,
                aggregates=aggregates.get(s.host, frozenset()),
                enabled=s.enabled,
                up=s.up,
                free_vcpus=free.get(s.host, {}).get("VCPU", 0),
                free_ram_mb=free.get(s.host, {}).get("MEMORY_MB", 0),
                free_disk_gb=free.get(s.host, {}).get("DISK_GB", 0),
            )
            for s in services
            if s.host != host
        )
        return Workload(
            host=host,
            instances=instances,
            destinations=destinations,
            groups=groups,
            instance_hosts=instance_hosts,
            host_aggregates=aggregates,
        )

    def evacuation_status(self, instance: str, source: str) -> EvacuationStatus:
        migs = self._evacuations(f"instance_uuid={instance}&source_compute={source}")
        migs = [m for m in migs if m.get("instance_uuid") == instance]
        newest = max(
            migs, key=lambda m: (m.get("created_at") or "", m.get("id") or 0), default=None
        )
        try:
            server = (self.nova.get(f"/servers/{instance}", LIST_MV_MIN) or {})["server"]
        except HttpRefusal as exc:
            if exc.status != 404:
                raise
            server = None
        return evacuation_status(
            instance,
            source,
            server_status=None if server is None else str(server.get("status") or ""),
            host=(server or {}).get("OS-EXT-SRV-ATTR:host"),
            task_state=(server or {}).get("OS-EXT-STS:task_state"),
            migration_status=newest.get("status") if newest else None,
            destination=newest.get("dest_compute") if newest else None,
        )

    def evacuation_statuses(
        self, source: str, instances: Sequence[str]
    ) -> dict[str, EvacuationStatus]:
        wanted = set(instances)
        newest: dict[str, dict[str, Any]] = {}
        for m in self._evacuations(f"source_compute={source}"):
            key = str(m.get("instance_uuid"))
            mine = key in wanted and m.get("source_compute") == source
            if mine and (key not in newest or _age(m) > _age(newest[key])):
                newest[key] = m
        finished: dict[str, set[str]] = {}
        for inst, m in newest.items():
            if m.get("status") in ("done", "completed") and m.get("dest_compute"):
                finished.setdefault(m["dest_compute"], set()).add(inst)
        servers: dict[str, dict[str, Any]] = {}
        for dest, ids in sorted(finished.items()):
            url = f"/servers/detail?all_tenants=1&host={dest}"
            for listed in self.nova.pages(url, "servers", mv=LIST_MV_MIN):
                if listed.get("id") in ids:
                    servers[listed["id"]] = listed
        out: dict[str, EvacuationStatus] = {}
        for inst in instances:
            mig = newest.get(inst)
            row = servers.get(inst)
            if mig is None or (mig.get("status") in ("done", "completed") and row is None):
                out[inst] = self.evacuation_status(inst, source)  # not in bulk: ask directly
            elif row is None:
                failed = mig.get("status") in ("failed", "error")
                out[inst] = EvacuationStatus(
                    inst,
                    EvacuationPhase.FAILED if failed else EvacuationPhase.RUNNING,
                    None,
                    "",
                    None,
                    mig.get("status"),
                    mig.get("dest_compute"),
                    f"migration {mig.get('status')}",
                )
            else:
                out[inst] = evacuation_status(
                    inst,
                    source,
                    server_status=str(row.get("status") or ""),
                    host=row.get("OS-EXT-SRV-ATTR:host"),
                    task_state=row.get("OS-EXT-STS:task_state"),
                    migration_status=mig.get("status"),
                    destination=mig.get("dest_compute"),
                )
        return out

    def evacuations_pending_cleanup(self, host: str) -> Sequence[str]:
        migs = self._evacuations(f"source_compute={host}")
        found = {
            m["instance_uuid"]: None
            for m in sorted(migs, key=_age)
            if m.get("source_compute") == host and m.get("status") in PENDING_CLEANUP
        }
        return list(found)

    # ------------------------------------------------------------------ actions

    def force_down(self, host: str, reason: str) -> None:
        # One PUT at 2.53 sets both: Nova applies status and forced_down from the same body.
        body = {"forced_down": True, "status": "disabled", "disabled_reason": reason[:255]}
        self._update_service(host, body)

    def enable(self, host: str) -> None:
        # Nova checks for `done` evacuations before saving anything: a refusal changes nothing.
        self._update_service(host, {"forced_down": False, "status": "enabled"})

    def reset_state(self, instance: str, state: str) -> None:
        self._action(instance, {"os-resetState": {"state": state}})

    def start(self, instance: str) -> None:
        try:
            self._action(instance, {"os-start": None})
        except HttpRefusal as exc:
            if exc.status != 409:
                raise
            server = (self.nova.get(f"/servers/{instance}", LIST_MV_MIN) or {})["server"]
            if server.get("status") != "ACTIVE" or server.get("OS-EXT-STS:task_state"):
                raise
            # Already running: starting it again is a no-op, as the port promises.

    def evacuate(self, instance: str, target: str | None) -> None:
        args = {"host": target} if target else {}
        self._action(instance, {"evacuate": args}, self._evacuation_mv())

    # ------------------------------------------------------------------ helpers

    def _action(self, instance: str, body: dict[str, Any], mv: str | None = None) -> None:
        self.nova.call("POST", f"/servers/{instance}/action", mv=mv or LIST_MV_MIN, body=body)

    def _update_service(self, host: str, body: dict[str, Any]) -> None:
        service_id = self._service_ids.get(host)
        if service_id is None:
            data = self.nova.get(f"/os-services?binary=nova-compute&host={host}", SERVICES_MV)
            rows = [r for r in (data or {}).get("services") or [] if r.get("host") == host]
            if not rows:
                raise PermanentError(f"nova: no nova-compute service on host {host}")
            service_id = self._service_ids[host] = str(rows[0]["id"])
        try:
            self.nova.call("PUT", f"/os-services/{service_id}", mv=SERVICES_MV, body=body)
        except HttpRefusal as exc:
            if exc.status == 404:
                self._service_ids.pop(host, None)  # the service was re-created: look it up again
            raise

    def _server_list_mv(self) -> str:
        if self._list_mv is None:
            found = self.nova.max_microversion(LIST_MV_MAX)
            if found is None or _mv_tuple(found) < _mv_tuple(LIST_MV_MIN):
                raise PermanentError(f"nova: microversion {LIST_MV_MIN} needed, cloud has {found}")
            self._list_mv = found
        return self._list_mv

    def _evacuation_mv(self) -> str:
        if self._evacuate_mv is None:
            found = self.nova.max_microversion(EVACUATE_MV_MAX)
            if found is None or _mv_tuple(found) < _mv_tuple(EVACUATE_MV_MIN):
                raise PermanentError(
                    f"nova: microversion {EVACUATE_MV_MIN} needed to evacuate, cloud has {found}"
                )
            self._evacuate_mv = found
        return self._evacuate_mv

    def _evacuations(self, query: str) -> list[dict[str, Any]]:
        url = f"/os-migrations?migration_type=evacuation&{query}"
        data = self.nova.get(url, MIGRATIONS_MV) or {}
        return [m for m in data.get("migrations") or [] if m.get("migration_type") == "evacuation"]

    def _instance(
        self,
        row: dict[str, Any],
        host: str,
        group_of: dict[str, list[str]],
        images: dict[str, dict[str, str] | None],
    ) -> InstanceInfo:
        flavor = row.get("flavor") or {}
        image = row.get("image")
        image_id = image.get("id") if isinstance(image, dict) else None
        props = self._image_properties(image_id, images) if image_id else {}
        return InstanceInfo(
            id=row["id"],
            name=row.get("name") or "",
            host=row.get("OS-EXT-SRV-ATTR:host") or host,
            project_id=row.get("tenant_id") or "",
            status=row.get("status") or "",
            task_state=row.get("OS-EXT-STS:task_state"),
            locked=bool(row.get("locked")),
            flavor=FlavorInfo(
                name=flavor.get("original_name") or "",
                vcpus=int(flavor.get("vcpus") or 0),
                ram_mb=int(flavor.get("ram") or 0),
                # Placement's DISK_GB: root + ephemeral + swap rounded up to whole GiB.
                disk_gb=int(flavor.get("disk") or 0)
                + int(flavor.get("ephemeral") or 0)
                + math.ceil(int(flavor.get("swap") or 0) / 1024),
                extra_specs={str(k): str(v) for k, v in (flavor.get("extra_specs") or {}).items()},
            ),
            metadata={str(k): str(v) for k, v in (row.get("metadata") or {}).items()},
            image_properties=props or {},
            image_unreadable=props is None,
            volume_backed=not image_id,
            server_groups=tuple(group_of.get(row["id"], ())),
            availability_zone=row.get("OS-EXT-AZ:availability_zone") or "",
            pinned_az=bool(row.get("pinned_availability_zone")),
        )

    def _image_properties(
        self, image_id: str, cache: dict[str, dict[str, str] | None]
    ) -> dict[str, str] | None:
        """The image's properties; None when Glance refuses (deleted image, no access): the
        planner then cannot decide image rules and fails closed."""
        if image_id not in cache:
            try:
                doc = self.glance.get(f"/images/{image_id}") or {}
            except PermanentError as exc:  # TransientError propagates: the whole read is retried
                log.warning("image %s unreadable: %s", image_id, exc)
                cache[image_id] = None
                return None
            cache[image_id] = {
                str(k): str(v) for k, v in doc.items() if k not in _IMAGE_CORE and v is not None
            }
        return cache[image_id]

    def _server_groups(
        self, on_host: set[str]
    ) -> tuple[dict[str, ServerGroupInfo], dict[str, list[str]]]:
        """The groups with a member in ``on_host``, and each such member's group ids."""
        groups: dict[str, ServerGroupInfo] = {}
        group_of: dict[str, list[str]] = {}
        for row in self._all_groups():
            members = frozenset(row.get("members") or ())
            mine = members & on_host
            if not mine:
                continue
            policy = row.get("policy") or (row.get("policies") or [""])[0]
            groups[row["id"]] = ServerGroupInfo(id=row["id"], policy=policy, members=members)
            for member in mine:
                group_of.setdefault(member, []).append(row["id"])
        return groups, group_of

    def _all_groups(self) -> Iterable[dict[str, Any]]:
        # os-server-groups pages by limit and offset, not by marker.
        offset, seen = 0, set[str]()
        while True:
            url = f"/os-server-groups?all_projects=True&limit={PAGE}&offset={offset}"
            rows = (self.nova.get(url, GROUPS_MV) or {}).get("server_groups") or []
            fresh = [r for r in rows if r["id"] not in seen]
            yield from fresh
            seen.update(r["id"] for r in fresh)
            if len(rows) < PAGE or not fresh:
                return
            offset += len(rows)

    def _member_hosts(self, groups: Iterable[ServerGroupInfo], hosts: dict[str, str]) -> None:
        missing = sorted({m for g in groups for m in g.members} - set(hosts))
        if len(missing) > MAX_MEMBER_LOOKUPS:
            log.warning("%d group members to locate, reading the first %d", len(missing),
                        MAX_MEMBER_LOOKUPS)  # fmt: skip
        for member in missing[:MAX_MEMBER_LOOKUPS]:
            try:
                server = (self.nova.get(f"/servers/{member}", LIST_MV_MIN) or {})["server"]
            except HttpRefusal as exc:
                if exc.status == 404:
                    continue  # deleted since the group was read
                raise
            if server.get("OS-EXT-SRV-ATTR:host"):
                hosts[member] = server["OS-EXT-SRV-ATTR:host"]

    def _host_aggregates(self) -> dict[str, frozenset[str]]:
        data = self.nova.get("/os-aggregates", AGGREGATES_MV) or {}
        names: dict[str, set[str]] = {}
        for agg in data.get("aggregates") or []:
            for member in agg.get("hosts") or []:
                names.setdefault(member, set()).add(agg["name"])
        return {h: frozenset(n) for h, n in names.items()}

    def _free_capacity(self) -> dict[str, dict[str, int]]:
        """host -> resource class -> free amount, from one allocation-candidates read."""
        rps = self.placement.get("/resource_providers", PLACEMENT_MV) or {}
        name_of = {rp["uuid"]: rp["name"] for rp in rps.get("resource_providers") or []}
        url = "/allocation_candidates?resources=VCPU:1,MEMORY_MB:1"
        data = self.placement.get(url, PLACEMENT_MV) or {}
        free: dict[str, dict[str, int]] = {}
        for uuid, summary in (data.get("provider_summaries") or {}).items():
            resources = summary.get("resources") or {}
            free[name_of.get(uuid, uuid)] = {
                rc: max(0, int(resources[rc]["capacity"]) - int(resources[rc]["used"]))
                for rc in _RESOURCES
                if rc in resources
            }
        return free


_IMAGE_CORE = frozenset(
    {
        "id", "name", "status", "visibility", "owner", "checksum", "os_hash_algo",
        "os_hash_value", "disk_format", "container_format", "created_at", "updated_at", "self",
        "file", "schema", "direct_url", "locations", "tags", "size", "virtual_size", "min_disk",
        "min_ram", "protected", "os_hidden", "stores",
    }
)  # fmt: skip


def _age(mig: dict[str, Any]) -> tuple[str, int]:
    """Sort key: creation time (ISO strings sort chronologically), then id."""
    return str(mig.get("created_at") or ""), int(mig.get("id") or 0)
