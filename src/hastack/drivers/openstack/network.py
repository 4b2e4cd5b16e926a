"""The network port over openstacksdk: Neutron's agents, L3 / DHCP scheduling and router health
read as raw JSON.

Every call goes through :class:`~hastack.drivers.openstack.connection.RawApi` on the sdk's network
proxy: bulk reads never build sdk resources, and no vendor exception escapes.  Choices the port
leaves open:

- ``agents``: agent types other than L3, DHCP, Open vSwitch and metadata are left out; an L3
  agent's ``agent_mode`` ``dvr_no_external`` reads as :attr:`AgentMode.DVR` (it never hosts a
  legacy router either), an unknown mode as :attr:`AgentMode.NONE`.
- ``router_health`` of up to ``CHUNK`` routers filters the port and floating-IP lists by them
  (repeated ``device_id`` / ``router_id`` filters mean "any of"; URLs stay under ~6 KB); of more,
  it reads every router port (by ``device_owner``) and every floating IP, one list each.  A
  router with neither is looked up by id in the router list, so that one which no longer exists
  is left out.
- ``routers(ha_states=...)``: agents that report no ``ha_state`` (a legacy router's) are left
  out of the mapping.
- ``remove_router`` of a router that no longer exists succeeds (it is hosted nowhere); an
  unknown agent is a :class:`~hastack.errors.PermanentError` everywhere.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import openstack

from hastack.domain.network import AgentInfo, AgentKind, AgentMode, NetworkInfo, RouterInfo
from hastack.drivers.openstack.connection import HttpRefusal, RawApi, open_proxy
from hastack.ports.network import ROUTER_OWNERS, PortState, RouterHealth

log = logging.getLogger(__name__)

AGENT_KINDS = {
    "L3 agent": AgentKind.L3,
    "DHCP agent": AgentKind.DHCP,
    "Open vSwitch agent": AgentKind.OVS,
    "Metadata agent": AgentKind.METADATA,
}
_MODES = {"legacy": AgentMode.LEGACY, "dvr": AgentMode.DVR, "dvr_snat": AgentMode.DVR_SNAT,
          "dvr_no_external": AgentMode.DVR}  # fmt: skip
CHUNK = 100  # ids per filtered list: 100 x ~46 bytes of "device_id=<uuid>&" stays under 6 KB
_ROUTER_FIELDS = ("id", "name", "distributed", "ha", "availability_zone_hints")
_PORT_FIELDS = ("id", "device_id", "device_owner", "status", "binding:host_id")
_FIP_FIELDS = ("id", "router_id", "status")


def parse_heartbeat(value: str | None) -> float | None:
    """Neutron's ``heartbeat_timestamp`` (``2026-01-01 00:00:00[.ffffff]``, UTC) as seconds
    since the epoch."""
    if not value:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        log.warning("unreadable heartbeat_timestamp %r", value)
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _fields(names: Iterable[str]) -> str:
    return "&".join(f"fields={n}" for n in names)


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class NeutronNetwork:
    """:class:`~hastack.ports.network.NetworkPort` over an openstacksdk connection (admin:
    agents, scheduling and the routers' ``distributed`` / ``ha`` are admin only).

    ``timeout`` bounds every HTTP request, in seconds.
    """

    def __init__(self, conn: openstack.connection.Connection, *, timeout: float = 30) -> None:
        self.conn = conn
        self.timeout = timeout
        self._api: RawApi | None = None

    @property
    def neutron(self) -> RawApi:
        # Made on first use: building the sdk proxy authenticates, and may fail like a call.
        if self._api is None:
            proxy = open_proxy(self.conn, "network", "neutron")
            self._api = RawApi(proxy, "neutron", self.timeout)
        return self._api

    # ------------------------------------------------------------------ reads

    def agents(self) -> list[AgentInfo]:
        return [a for row in self.neutron.pages("/agents", "agents") if (a := _agent(row))]

    def routers(self, *, ha_states: Collection[str] = ()) -> list[RouterInfo]:
        url = f"/routers?{_fields(_ROUTER_FIELDS)}"
        rows = list(self.neutron.pages(url, "routers"))
        hosts: dict[str, list[str]] = {}
        for agent in self._agent_ids("L3 agent"):
            for row in self._hosted(f"/agents/{agent}/l3-routers", "routers"):
                hosts.setdefault(str(row["id"]), []).append(agent)
        states = {r: self._ha_states(r) for r in dict.fromkeys(ha_states)}
        return [
            RouterInfo(
                id=str(row["id"]),
                name=str(row.get("name") or ""),
                agents=tuple(hosts.get(str(row["id"]), ())),
                distributed=bool(row.get("distributed")),
                ha=bool(row.get("ha")),
                availability_zones=tuple(row.get("availability_zone_hints") or ()),
                ha_states=states.get(str(row["id"])) or {},
            )
            for row in rows
        ]

    def networks(self) -> list[NetworkInfo]:
        url = f"/subnets?enable_dhcp=True&{_fields(('id', 'network_id'))}"
        with_dhcp = {str(s["network_id"]) for s in self.neutron.pages(url, "subnets")}
        url = f"/networks?{_fields(('id', 'name', 'availability_zone_hints'))}"
        rows = [r for r in self.neutron.pages(url, "networks") if str(r["id"]) in with_dhcp]
        served: dict[str, list[str]] = {}
        for agent in self._agent_ids("DHCP agent"):
            for row in self._hosted(f"/agents/{agent}/dhcp-networks", "networks"):
                served.setdefault(str(row["id"]), []).append(agent)
        return [
            NetworkInfo(
                id=str(row["id"]),
                name=str(row.get("name") or ""),
                agents=tuple(served.get(str(row["id"]), ())),
                availability_zones=tuple(row.get("availability_zone_hints") or ()),
            )
            for row in rows
        ]

    def router_health(self, router_ids: Collection[str]) -> Mapping[str, RouterHealth]:
        ids = list(dict.fromkeys(router_ids))
        wanted = set(ids)
        ports: dict[str, list[PortState]] = {}
        fips: dict[str, list[tuple[str, str]]] = {}
        for row in self._router_rows(ids, "/ports", "device_id", _PORT_FIELDS, ROUTER_OWNERS):
            if row.get("device_owner") in ROUTER_OWNERS and row.get("device_id") in wanted:
                ports.setdefault(str(row["device_id"]), []).append(_port(row))
        for row in self._router_rows(ids, "/floatingips", "router_id", _FIP_FIELDS, ()):
            if row.get("router_id") in wanted:
                fip = (str(row["id"]), str(row.get("status") or ""))
                fips.setdefault(str(row["router_id"]), []).append(fip)
        existing = set(ports) | set(fips)
        existing |= self._existing_routers([r for r in ids if r not in existing])
        return {
            r: RouterHealth(
                router=r,
                ports=tuple(sorted(ports.get(r, ()), key=lambda p: p.id)),
                floating_ips=tuple(sorted(fips.get(r, ()))),
            )
            for r in ids
            if r in existing
        }

    # ------------------------------------------------------------------ scheduling

    def add_router(self, agent_id: str, router_id: str) -> None:
        url = f"/agents/{agent_id}/l3-routers"
        try:
            self.neutron.call("POST", url, body={"router_id": router_id})
        except HttpRefusal as exc:
            # Neutron 29 answers 201 when that very agent hosts it already; older ones 409.
            if not (exc.kind == "RouterHostedByL3Agent" and str(exc).endswith(f"{agent_id}.")):
                raise

    def remove_router(self, agent_id: str, router_id: str) -> None:
        try:
            self.neutron.call("DELETE", f"/agents/{agent_id}/l3-routers/{router_id}")
        except HttpRefusal as exc:
            if exc.kind != "RouterNotFound":  # gone: hosted nowhere
                raise

    def add_network(self, agent_id: str, network_id: str) -> None:
        url = f"/agents/{agent_id}/dhcp-networks"
        try:
            self.neutron.call("POST", url, body={"network_id": network_id})
        except HttpRefusal as exc:
            if exc.kind != "NetworkHostedByDHCPAgent":
                raise

    def remove_network(self, agent_id: str, network_id: str) -> None:
        try:
            self.neutron.call("DELETE", f"/agents/{agent_id}/dhcp-networks/{network_id}")
        except HttpRefusal as exc:
            if exc.kind != "NetworkNotHostedByDhcpAgent":
                raise

    # ------------------------------------------------------------------ helpers

    def _agent_ids(self, agent_type: str) -> list[str]:
        url = f"/agents?agent_type={agent_type.replace(' ', '%20')}&{_fields(('id', 'agent_type'))}"
        rows = self.neutron.pages(url, "agents")
        return [str(r["id"]) for r in rows if r.get("agent_type") == agent_type]

    def _hosted(self, url: str, key: str) -> list[dict[str, Any]]:
        """An agent's routers or networks; an agent deleted since it was listed hosts none."""
        try:
            return list((self.neutron.get(url) or {}).get(key) or [])
        except HttpRefusal as exc:
            if exc.kind == "AgentNotFound":
                return []
            raise

    def _router_rows(
        self,
        ids: Sequence[str],
        collection: str,
        key: str,
        fields: Sequence[str],
        owners: Sequence[str],
    ) -> Iterator[dict[str, Any]]:
        """Rows of ``collection`` whose ``key`` is one of ``ids``, perhaps with others: up to
        ``CHUNK`` ids, one list filtered by them; more, one list of every router's rows (by
        ``device_owner`` when ``owners`` are given), which costs the cloud less than many."""
        name = collection.lstrip("/")
        if len(ids) > CHUNK:
            query = "&".join([*(f"device_owner={o}" for o in owners), _fields(fields)])
            yield from self.neutron.pages(f"{collection}?{query}", name)
            return
        if ids:
            query = "&".join(f"{key}={r}" for r in ids)
            yield from self.neutron.pages(f"{collection}?{query}&{_fields(fields)}", name)

    def _ha_states(self, router_id: str) -> dict[str, str]:
        try:
            data = self.neutron.get(f"/routers/{router_id}/l3-agents") or {}
        except HttpRefusal as exc:
            if exc.kind == "RouterNotFound":
                return {}
            raise
        agents = data.get("agents") or []
        return {str(a["id"]): str(a["ha_state"]) for a in agents if a.get("ha_state")}

    def _existing_routers(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            query = "&".join(f"id={r}" for r in chunk)
            rows = self.neutron.pages(f"/routers?{query}&fields=id", "routers")
            found.update(str(r["id"]) for r in rows)
        return found


def _agent(row: dict[str, Any]) -> AgentInfo | None:
    kind = AGENT_KINDS.get(str(row.get("agent_type")))
    if kind is None:
        return None
    mode = AgentMode.NONE
    if kind is AgentKind.L3:
        mode = _MODES.get(str((row.get("configurations") or {}).get("agent_mode")), AgentMode.NONE)
    return AgentInfo(
        id=str(row["id"]),
        kind=kind,
        host=str(row.get("host") or ""),
        alive=bool(row.get("alive")),
        admin_state_up=bool(row.get("admin_state_up")),
        availability_zone=str(row.get("availability_zone") or ""),
        mode=mode,
        heartbeat_at=parse_heartbeat(row.get("heartbeat_timestamp")),
    )


def _port(row: dict[str, Any]) -> PortState:
    return PortState(
        id=str(row["id"]),
        owner=str(row["device_owner"]),
        status=str(row.get("status") or ""),
        host=str(row.get("binding:host_id") or ""),
    )
