"""Where each evacuated instance goes: greedy placement over free capacity.

Hosts wait in heaps ordered by free RAM, one per (spare, availability zone); a host's stale heap
entry is skipped once it has taken an instance.  A request that found no host (with no
anti-affinity in play) is remembered, and any later request at least as large fails at once, so
planning 500 instances over 10,000 hosts stays in tens of milliseconds.  Used by
:mod:`hastack.policy.evacuation`; pure.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping, Sequence

from hastack.domain.instances import (
    HostCapacity,
    InstanceInfo,
    RecoveryPolicy,
    ServerGroupInfo,
)

AFFINE = ("affinity", "soft-affinity")


@dataclasses.dataclass(frozen=True)
class Candidate:
    instance: InstanceInfo
    notes: tuple[str, ...]
    wave: int
    priority: int


@dataclasses.dataclass(frozen=True)
class Demand:
    vcpus: int
    ram: int
    disk: int

    def covers(self, other: Demand) -> bool:
        return self.vcpus >= other.vcpus and self.ram >= other.ram and self.disk >= other.disk

    def describe(self) -> str:
        disk = f", {self.disk} GB disk" if self.disk else ""
        return f"{self.ram} MB RAM, {self.vcpus} vCPU{disk}"


def demand_of(instance: InstanceInfo) -> Demand:
    f = instance.flavor
    disk = 0 if instance.volume_backed else max(0, f.disk_gb)
    return Demand(max(0, f.vcpus), max(0, f.ram_mb), disk)


def smallest_demand(candidates: Sequence[Candidate]) -> Demand:
    """The smallest demand in each dimension: a host below it can take no instance."""
    demands = [demand_of(c.instance) for c in candidates] or [Demand(0, 0, 0)]
    return Demand(*(min(getattr(d, f) for d in demands) for f in ("vcpus", "ram", "disk")))


@dataclasses.dataclass
class Room:
    cap: HostCapacity
    vcpus: int
    ram: int
    disk: int
    version: int = 0

    def fits(self, d: Demand) -> bool:
        return self.vcpus >= d.vcpus and self.ram >= d.ram and self.disk >= d.disk

    def heap_keys(self) -> tuple[tuple[bool, str | None], ...]:
        return ((self.cap.spare, None), (self.cap.spare, self.cap.availability_zone))


class Pool:
    """Free capacity of the destinations, in heaps by (spare, zone), most free RAM first.

    Capacity only shrinks while planning, so a demand that found no host in a heap (with no
    anti-affinity exclusions) is remembered, and any demand at least as large fails at once;
    and a host that cannot take even ``floor`` (the smallest demand in each dimension) leaves
    the heaps for good.
    """

    def __init__(self, rooms: Mapping[str, Room], floor: Demand) -> None:
        self.rooms, self.floor = rooms, floor
        self._heaps: dict[tuple[bool, str | None], list[tuple[int, str, int]]] = {}
        self._failed: dict[tuple[bool, str | None], list[Demand]] = {}
        for room in rooms.values():
            for key in room.heap_keys() if room.fits(floor) else ():
                self._heaps.setdefault(key, []).append((-room.ram, room.cap.host, 0))
        for heap in self._heaps.values():
            heapq.heapify(heap)

    def best(
        self, key: tuple[bool, str | None], d: Demand, excluded: frozenset[str]
    ) -> Room | None:
        if not excluded and any(d.covers(f) for f in self._failed.get(key, ())):
            return None
        heap = self._heaps.get(key, [])
        stash, found = [], None
        while heap and -heap[0][0] >= d.ram:
            entry = heapq.heappop(heap)
            room = self.rooms[entry[1]]
            if entry[2] != room.version or not room.fits(self.floor):
                continue  # stale (it has taken an instance since), or full for good
            stash.append(entry)
            if room.fits(d) and room.cap.host not in excluded:
                found = room
                break
        for entry in stash:
            heapq.heappush(heap, entry)
        if found is None and not excluded:
            self._failed.setdefault(key, []).append(d)
        return found

    def take(self, room: Room, d: Demand) -> None:
        room.vcpus, room.ram, room.disk = room.vcpus - d.vcpus, room.ram - d.ram, room.disk - d.disk
        room.version += 1
        for key in room.heap_keys() if room.fits(self.floor) else ():
            heapq.heappush(
                self._heaps.setdefault(key, []), (-room.ram, room.cap.host, room.version)
            )


def open_rooms(
    failed_host: str, destinations: Sequence[HostCapacity], policy: RecoveryPolicy
) -> tuple[dict[str, Room], bool]:
    """Usable destinations (the first entry of a repeated host wins), and whether usable
    spare hosts were left out by the policy."""
    rooms: dict[str, Room] = {}
    seen: set[str] = set()
    spares_off = False
    for cap in destinations:
        usable = cap.host != failed_host and cap.enabled and cap.up and cap.host not in seen
        seen.add(cap.host)
        if usable and cap.spare and not policy.use_spare_hosts:
            spares_off = True
        elif usable:
            rooms[cap.host] = Room(cap, cap.free_vcpus, cap.free_ram_mb, cap.free_disk_gb)
    return rooms, spares_off


def members_elsewhere(
    groups: Mapping[str, ServerGroupInfo],
    gids: set[str],
    instance_hosts: Mapping[str, str],
    failed_host: str,
    moving: frozenset[str],
) -> dict[str, dict[str, int]]:
    """For each group in ``gids``: hosts of its members not on the failed host, with counts."""
    out: dict[str, dict[str, int]] = {}
    for gid in gids & groups.keys():
        counts = out.setdefault(gid, {})
        for member in groups[gid].members - moving:
            host = instance_hosts.get(member)
            if host and host != failed_host:
                counts[host] = counts.get(host, 0) + 1
    return out


class Placer:
    def __init__(
        self,
        pool: Pool,
        spares_off: bool,
        groups: Mapping[str, ServerGroupInfo],
        elsewhere: Mapping[str, dict[str, int]],
    ) -> None:
        self.pool, self.spares_off = pool, spares_off
        self.groups, self.elsewhere = groups, elsewhere
        self.planned: dict[str, set[str]] = {}  # group -> hosts planned for its members
        self.spares_used: set[str] = set()

    def place(self, instance: InstanceInfo) -> tuple[str | None, str]:
        """The destination for ``instance`` and why, or None and why none fits."""
        by_policy, notes = self._group_policies(instance)
        d = demand_of(instance)
        hard = self._excluded(by_policy.get("anti-affinity", []))
        soft = hard | self._excluded(by_policy.get("soft-anti-affinity", []))
        affine = [g for p in AFFINE for g in by_policy.get(p, [])]
        room, how = self._join(instance, affine, d, soft, notes)
        if room is None:
            room, how = self._search(instance, d, soft)
        if room is None and soft != hard:
            room, how = self._search(instance, d, hard)
            notes.extend(["soft anti-affinity not kept: no other host fits"] if room else [])
        if room is None:
            return None, "; ".join([*notes, self._no_room(instance, d, hard)])
        self.pool.take(room, d)
        for group in (g for gs in by_policy.values() for g in gs):
            self.planned.setdefault(group, set()).add(room.cap.host)
        if room.cap.spare:
            self.spares_used.add(room.cap.host)
        return room.cap.host, "; ".join([*notes, f"to {room.cap.host} ({how})"])

    def _group_policies(self, instance: InstanceInfo) -> tuple[dict[str, list[str]], list[str]]:
        by_policy: dict[str, list[str]] = {}
        notes = []
        for gid in sorted(set(instance.server_groups)):
            group = self.groups.get(gid)
            kind = str(group.policy).strip().lower() if group else ""
            if group is None:
                notes.append(f"server group {gid} unknown: not applied")
            elif kind not in ("anti-affinity", "soft-anti-affinity", *AFFINE):
                notes.append(f"server group {gid} has unknown policy {group.policy!r}: not applied")
            else:
                by_policy.setdefault(kind, []).append(gid)
        return by_policy, notes

    def _excluded(self, gids: Iterable[str]) -> frozenset[str]:
        out: set[str] = set()
        for gid in gids:
            out |= self.elsewhere[gid].keys() | self.planned.get(gid, set())
        return frozenset(out)

    def _join(
        self,
        instance: InstanceInfo,
        affine: list[str],
        d: Demand,
        excluded: frozenset[str],
        notes: list[str],
    ) -> tuple[Room | None, str]:
        """Try the host of an affinity group: a live member elsewhere first, then the plan's."""
        for gid in affine:
            live = {h: n for h, n in self.elsewhere[gid].items() if h in self.pool.rooms}
            hosts = sorted(live, key=lambda h: (-live[h], h)) or sorted(self.planned.get(gid, ()))
            for host in hosts[:1]:
                room = self.pool.rooms[host]
                zone = instance.availability_zone if instance.pinned_az else ""
                in_zone = not zone or room.cap.availability_zone == zone
                if room.fits(d) and host not in excluded and in_zone:
                    return room, f"affinity group {gid}"
                notes.append(f"affinity group {gid} not kept: {host} cannot take it")
        return None, ""

    def _search(
        self, instance: InstanceInfo, d: Demand, excluded: frozenset[str]
    ) -> tuple[Room | None, str]:
        zone = instance.availability_zone
        tiers: list[tuple[bool, str | None, str]]
        if zone and instance.pinned_az:
            tiers = [(False, zone, f"most free RAM in {zone}")]
        elif zone:
            tiers = [
                (False, zone, f"most free RAM in {zone}"),
                (False, None, "none fits in " + zone),
            ]
        else:
            tiers = [(False, None, "most free RAM")]
        tiers += [(True, z, "spare host: no other host fits") for _, z, _ in tiers]
        return next(
            ((r, how) for s, z, how in tiers if (r := self.pool.best((s, z), d, excluded))),
            (None, ""),
        )

    def _no_room(self, instance: InstanceInfo, d: Demand, excluded: frozenset[str]) -> str:
        if not self.pool.rooms:
            text = "no enabled, up destination host"
        else:
            zone = instance.availability_zone if instance.pinned_az else ""
            text = f"no host with {d.describe()} free" + (f" in {zone}" if zone else "")
        if excluded:
            text += f" (anti-affinity rules out {len(excluded)} host(s))"
        if self.spares_off:
            text += " (spare hosts not used: use_spare_hosts is off)"
        return text


# ---------------------------------------------------------------- the plan
