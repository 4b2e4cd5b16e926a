"""The composition root: configuration in, a running engine out.

``build_controller(config)`` wires the openstacksdk compute driver, the signal drivers, the
fence devices, the store and the engine; nothing else in hastack constructs drivers.  The
simulator's virtual-time scenarios use :func:`build_settings` with their in-process drivers.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from hastack.clock import Clock, SystemClock
from hastack.config import Config
from hastack.dynamic import DynamicSettings
from hastack.engine.devices import FenceTopology
from hastack.engine.engine import CONTROL, Engine, EngineOptions
from hastack.errors import ConfigError, HastackError
from hastack.policy.recovery import Segment, Settings
from hastack.ports.fencing import FenceDevice
from hastack.ports.signals import SignalSource
from hastack.ports.store import Store

if TYPE_CHECKING:
    from hastack.api.server import ApiServer
    from hastack.drivers.signals.agents import AgentListener


class SegmentMap(Mapping[str, Segment]):
    """host -> its segment, by the config's patterns (first match wins), cached."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._segments = {s.name: Segment(s.name, s.recovery.policy()) for s in config.segments}
        self._cache: dict[str, Segment | None] = {}

    def _find(self, host: str) -> Segment | None:
        if host not in self._cache:
            seg = self._config.segment_of(host)
            self._cache[host] = self._segments[seg.name] if seg else None
        return self._cache[host]

    def __getitem__(self, host: str) -> Segment:
        found = self._find(host)
        if found is None:
            raise KeyError(host)
        return found

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and self._find(host) is not None

    def __iter__(self) -> Iterator[str]:
        return (h for h, s in self._cache.items() if s is not None)

    def __len__(self) -> int:
        return sum(1 for s in self._cache.values() if s is not None)


def build_topology(config: Config, agents: AgentListener | None = None) -> FenceTopology:
    """Every host's fence devices; watchdog devices are bound to ``agents`` (the listener)."""
    from hastack.drivers.fencing.factory import build_fence_device  # noqa: PLC0415
    from hastack.drivers.fencing.watchdog import WatchdogFence  # noqa: PLC0415

    hosts: dict[str, list[list[FenceDevice]]] = {}
    for host, hc in config.hosts.items():
        hosts[host] = [
            [
                build_fence_device(spec, where=f"hosts.{host}.fencing[{n}].devices[{d}]")
                for d, spec in enumerate(level.devices)
            ]
            for n, level in enumerate(hc.fencing)
        ]
        for level_devices in hosts[host]:
            for device in level_devices:
                if isinstance(device, WatchdogFence):
                    device.bind(host, agents)
    return FenceTopology(hosts)


def open_agent_listener(config: Config, clock: Clock) -> AgentListener | None:
    """The UDP endpoint of the node agents, when ``agents.listen`` is set (not started)."""
    from hastack.agent.protocol import load_key, parse_address  # noqa: PLC0415
    from hastack.drivers.signals.agents import DEFAULT_PORT, AgentListener  # noqa: PLC0415

    if config.agents.listen is None:
        return None
    try:
        key = load_key(config.agents.key_file)
    except ValueError as exc:
        raise ConfigError(f"agents.key_file: {exc}") from None
    address = parse_address(config.agents.listen, DEFAULT_PORT)
    try:
        return AgentListener(
            address,
            key,
            clock,
            config.detection_profile(),
            name=config.controller.name,
            peer_gap=config.agents.peer_gap,
        )
    except OSError as exc:
        raise ConfigError(f"agents.listen: cannot bind {config.agents.listen}: {exc}") from None


def build_settings(config: Config, topology: FenceTopology) -> Settings:
    patterns = [p for s in config.segments for p in s.spare_hosts]
    return Settings(
        profile=config.detection_profile(),
        guards=config.guard_policy(),
        fence_levels=topology.levels(),
        segments=SegmentMap(config),
        spare_hosts=_SpareHosts(frozenset(), patterns),
        max_parallel=config.recovery.max_parallel,
        evacuate_timeout=config.recovery.evacuate_timeout,
        retries=config.recovery.retries,
        fence_attempts=config.recovery.fence_attempts,
        rejoin_auto=config.recovery.rejoin == "auto",
        fence_network_nodes=config.network.enabled and config.network.fence_nodes,
    )


class _SpareHosts(frozenset[str]):
    """A frozenset that also answers ``in`` for hosts matching a spare pattern."""

    patterns: tuple[str, ...]

    def __new__(cls, hosts: frozenset[str], patterns: list[str]) -> _SpareHosts:
        obj = super().__new__(cls, hosts)
        obj.patterns = tuple(patterns)
        return obj

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and (
            frozenset.__contains__(self, host)
            or any(fnmatch.fnmatchcase(host, p) for p in self.patterns)
        )


def open_store(config: Config, clock: Clock) -> Store:
    if config.store.driver == "etcd":
        from hastack.drivers.store.etcd import EtcdStore  # noqa: PLC0415

        return EtcdStore(config.store.endpoints, clock, timeout=config.store.timeout)
    from hastack.drivers.store.sqlite import SqliteStore  # noqa: PLC0415

    return SqliteStore(config.store.path, clock)


@dataclasses.dataclass
class Controller:
    engine: Engine
    store: Store
    agents: AgentListener | None = None
    api: ApiServer | None = None

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
        self.engine.close()
        if self.agents is not None:
            self.agents.close()
        self.store.close()


def build_controller(config: Config, *, clock: Clock | None = None) -> Controller:
    """Everything ``hastack serve`` runs, wired from ``config``."""
    from hastack.drivers.fencing.watchdog import WatchdogFence  # noqa: PLC0415
    from hastack.drivers.openstack.compute import NovaCompute  # noqa: PLC0415
    from hastack.drivers.openstack.connection import connect  # noqa: PLC0415
    from hastack.drivers.openstack.network import NeutronNetwork  # noqa: PLC0415
    from hastack.drivers.signals.bmc import BmcPower  # noqa: PLC0415
    from hastack.drivers.signals.probe import TcpProbe  # noqa: PLC0415

    clock = clock or SystemClock()
    agents = open_agent_listener(config, clock)
    topology = build_topology(config, agents)
    settings = build_settings(config, topology)
    conn = connect(config.cloud.clouds_yaml, config.cloud.name)
    compute = NovaCompute(
        conn,
        evacuate_microversion=config.cloud.evacuate_microversion,
        timeout=config.cloud.api_timeout,
    )
    signals: list[SignalSource] = []
    targets = {h: (hc.probe.address, hc.probe.port) for h, hc in config.hosts.items() if hc.probe}
    if targets:
        signals.append(TcpProbe(targets, settings.profile, timeout=config.detection.probe_timeout))
    if agents is not None:
        signals.append(agents)
    # the BMC signal reads power; a watchdog "reading" would count the agent's silence twice
    first = {
        host: [d for d in devices if not isinstance(getattr(d, "device", d), WatchdogFence)]
        for host, devices in topology.first_level().items()
    }
    first = {host: devices for host, devices in first.items() if devices}
    if first:
        # status reads are quick or useless: a dead BMC must not hold the tick for long
        signals.append(BmcPower(first, timeout=min(3.0, config.recovery.fence_timeout)))
    store = open_store(config, clock)
    options = EngineOptions(
        name=config.controller.name,
        tick=config.controller.tick,
        lease_ttl=config.controller.lease_ttl,
        fence_timeout=config.recovery.fence_timeout,
        # a router move is two blocking calls: as many threads as moves may be in flight
        workers=max(EngineOptions.workers, config.network.max_parallel),
    )
    network = None
    if config.network.enabled:
        network = NeutronNetwork(conn, timeout=config.cloud.api_timeout)
    engine = Engine(
        settings,
        compute,
        signals,
        topology,
        store,
        clock,
        options,
        hosts=config.hosts,
        network=network,
        net_settings=config.network.settings(),
        dynamic=DynamicSettings(config, lambda c: build_settings(c, topology)),
    )
    if agents is not None:
        agents.leadership = engine.leadership
        agents.start()
    api = None
    if config.api.listen is not None:
        from hastack.api.auth import keystone_checker  # noqa: PLC0415
        from hastack.api.server import ApiServer  # noqa: PLC0415

        try:
            api = ApiServer(config, engine, store, keystone=keystone_checker(conn)).start()
        except HastackError:
            engine.close()
            if agents is not None:
                agents.close()
            store.close()
            raise
    return Controller(engine, store, agents, api)


# ---------------------------------------------------------------- operator requests


def request(store: Store, kind: str, host: str = "", body: Mapping[str, Any] | None = None) -> None:
    """Record an operator request (``confirm``, ``maintenance``, ``rejoin``, ``paused``) for
    the leader to pick up on its next tick, and first in the audit trail with the operator
    (``body["operator"]``) and comment.  Unguarded by the lease: operators are not leaders."""
    body = dict(body or {})
    key = f"{CONTROL}{kind}/{host}" if host else f"{CONTROL}{kind}"
    comment = f": {body['comment']}" if body.get("comment") else ""
    _audit_request(store, host, f"request {kind}{comment}", str(body.get("operator", "?")))
    store.put(key, json.dumps(body, sort_keys=True))


def withdraw(store: Store, kind: str, host: str = "", *, operator: str = "?") -> None:
    key = f"{CONTROL}{kind}/{host}" if host else f"{CONTROL}{kind}"
    _audit_request(store, host, f"withdraw {kind}", operator)
    store.delete(key)


def _audit_request(store: Store, host: str, message: str, operator: str) -> None:
    from hastack.engine.audit import AuditEntry, AuditTrail  # noqa: PLC0415

    entry = AuditEntry(time.time(), host or "cluster", message, f"operator {operator}", "request")
    AuditTrail(store).record([entry])
