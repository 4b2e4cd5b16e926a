"""The controller's configuration: one YAML file, validated before anything runs.

``load_config(path)`` returns a :class:`Config` or raises :class:`~hastack.errors.ConfigError`
listing every problem as ``place: problem`` (``segments[1].recovery.protect: ...``), never a
secret's value.  ``etc/hastack.yaml.sample`` documents every option; ``hastack config check
FILE`` runs this validation from the command line.
"""

from __future__ import annotations

import fnmatch
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hastack.domain.instances import (
    PlacementMode,
    Protect,
    RecoveryPolicy,
    Rule,
    RuleKind,
)
from hastack.errors import ConfigError
from hastack.policy.detection import PROFILES, DetectionProfile
from hastack.policy.guards import Budget, GuardPolicy
from hastack.policy.netrecovery import NetSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudConfig(_Strict):
    name: str = Field(min_length=1, description="the cloud's name in clouds.yaml")
    clouds_yaml: str | None = Field(
        None, description="path to clouds.yaml; default: openstacksdk's search path"
    )
    evacuate_microversion: str | None = Field(
        None,
        pattern=r"^2\.\d+$",
        description="pin the evacuate microversion (default: the highest <= 2.94)",
    )
    api_timeout: float = Field(30.0, gt=0, le=600)


class StoreConfig(_Strict):
    """Where the journal and the leader lease live: ``sqlite`` (one controller, ``path``) or
    ``etcd`` (several controllers, ``endpoints``)."""

    driver: Literal["sqlite", "etcd"] = "sqlite"
    path: str = "/var/lib/hastack/hastack.db"
    endpoints: tuple[str, ...] = Field(
        (), description="etcd client URLs, e.g. http://10.0.0.1:2379 (driver etcd)"
    )
    timeout: float = Field(2.0, gt=0, le=60, description="etcd: seconds per request, per endpoint")

    @model_validator(mode="after")
    def _endpoints_for_etcd(self) -> StoreConfig:
        if self.driver == "etcd" and not self.endpoints:
            raise ValueError("driver etcd needs endpoints (etcd client URLs)")
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {url!r} is not an http(s):// URL")
        return self


class ControllerConfig(_Strict):
    name: str = Field(default_factory=socket.gethostname, min_length=1)
    tick: float = Field(1.0, gt=0, le=60, description="seconds between observe/decide passes")
    lease_ttl: float = Field(10.0, gt=0, le=300)


class AgentsConfig(_Strict):
    """Node agents (``hastack agent``) heartbeat here over UDP (docs/own-ha.md)."""

    listen: str | None = Field(
        None, description="address:port to receive agent heartbeats on, e.g. 0.0.0.0:7420"
    )
    key_file: str = Field("/etc/hastack/agent.key", description="the key shared with the agents")
    peer_gap: float = Field(
        5.0,
        gt=0,
        le=600,
        description="watchdog proof: the longest gap between a peer's acks; below half of "
        "the agents' self_fence.after",
    )

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            from hastack.agent.protocol import parse_address  # noqa: PLC0415

            parse_address(value, 7420)
        return value


class ApiToken(_Strict):
    """A static API token, for small sites: give ``token`` inline or (better) ``token_file``."""

    name: str = Field(min_length=1, description="who uses it: the audit trail's operator name")
    role: Literal["reader", "operator"]
    token: str | None = Field(None, min_length=16, repr=False)
    token_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ApiToken:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token or token_file")
        return self

    def secret(self) -> str:
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        try:
            value = Path(self.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"api token {self.name}: cannot read {self.token_file}: {exc}"
            ) from None
        if len(value) < 16:
            raise ConfigError(f"api token {self.name}: {self.token_file} holds under 16 characters")
        return value


class KeystoneAuthConfig(_Strict):
    """Keystone tokens, validated against the cloud's Keystone with the controller's own
    credentials; a token's roles map to hastack's roles (operator wins when both match)."""

    enabled: bool = False
    operator_roles: tuple[str, ...] = ("admin",)
    reader_roles: tuple[str, ...] = ("reader", "member")
    cache: float = Field(60.0, ge=0, le=3600, description="seconds a validated token is trusted")


class ApiTls(_Strict):
    """HTTPS for the API: tokens cross the network in every request."""

    cert_file: str = Field(description="PEM certificate (chain) the API presents")
    key_file: str = Field(description="its PEM private key")
    ca_file: str | None = Field(
        None, description="CA bundle to verify other controllers with when forwarding"
    )

    @model_validator(mode="after")
    def _readable(self) -> ApiTls:
        for path in (self.cert_file, self.key_file, self.ca_file):
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{path}: not a readable file")
        return self


class ApiConfig(_Strict):
    listen: str | None = Field(
        "127.0.0.1:7480", description="address:port of the REST API and dashboard; null: off"
    )
    tls: ApiTls | None = None
    advertise: str | None = Field(
        None, description="the URL other controllers reach this one at (default: from listen)"
    )
    tokens: tuple[ApiToken, ...] = ()
    keystone: KeystoneAuthConfig = KeystoneAuthConfig()

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            from hastack.agent.protocol import parse_address  # noqa: PLC0415

            parse_address(value, 7480)
        return value

    @model_validator(mode="after")
    def _unique(self) -> ApiConfig:
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ValueError("api token names must be unique")
        return self


class DetectionOverrides(_Strict):
    nova_stale_after: float | None = Field(None, gt=0)
    probe_failures: int | None = Field(None, ge=1)
    agent_stale_after: float | None = Field(None, gt=0)
    confirm_after: float | None = Field(None, ge=0)
    probe_interval: float | None = Field(None, gt=0)
    bmc_interval: float | None = Field(None, gt=0)
    nova_interval: float | None = Field(None, gt=0)
    probe_timeout: float = Field(1.0, gt=0, le=30)


class BudgetConfig(_Strict):
    kind: Literal["cloud", "segment", "az"]
    max_hosts: int = Field(ge=0)
    max_percent: float = Field(ge=0, le=100)
    window: float = Field(gt=0)


class GuardsConfig(_Strict):
    budgets: tuple[BudgetConfig, ...] = (
        BudgetConfig(kind="cloud", max_hosts=10, max_percent=20.0, window=600.0),
    )
    max_fences_per_tick: int = Field(5, ge=1)
    cliff_hosts: int = Field(5, ge=2)
    cliff_percent: float = Field(20.0, gt=0, le=100)
    cliff_window: float = Field(30.0, gt=0)
    min_visible_fraction: float = Field(0.5, ge=0, le=1)


class RuleConfig(_Strict):
    kind: RuleKind
    key: str = ""
    value: str = Field(min_length=1)

    @model_validator(mode="after")
    def _key_needed(self) -> RuleConfig:
        if self.kind in (RuleKind.METADATA, RuleKind.FLAVOR, RuleKind.IMAGE) and not self.key:
            raise ValueError(f"a {self.kind} rule needs a key")
        return self

    def rule(self) -> Rule:
        return Rule(self.kind, self.key, self.value)


class SegmentRecovery(_Strict):
    protect: Protect = Protect.ALL
    opt_in: tuple[RuleConfig, ...] = (
        RuleConfig(kind=RuleKind.METADATA, key="HA_Enabled", value="True"),
    )
    opt_out: tuple[RuleConfig, ...] = (
        RuleConfig(kind=RuleKind.METADATA, key="HA_Enabled", value="False"),
    )
    placement: PlacementMode = PlacementMode.PLAN
    use_spare_hosts: bool = True
    shared_storage: bool = Field(
        False, description="instance disks are on shared storage: evacuation keeps them"
    )
    allow_local_disk_rebuild: bool = Field(
        False, description="rebuild local-disk instances from their image: their disk is lost"
    )

    def policy(self) -> RecoveryPolicy:
        return RecoveryPolicy(
            protect=self.protect,
            opt_in=tuple(r.rule() for r in self.opt_in),
            opt_out=tuple(r.rule() for r in self.opt_out),
            placement=self.placement,
            use_spare_hosts=self.use_spare_hosts,
            shared_storage=self.shared_storage,
            allow_local_disk_rebuild=self.allow_local_disk_rebuild,
        )


class SegmentConfig(_Strict):
    name: str = Field(min_length=1)
    hosts: tuple[str, ...] = Field(min_length=1, description="host names or glob patterns")
    spare_hosts: tuple[str, ...] = ()
    recovery: SegmentRecovery = SegmentRecovery()


class RecoveryConfig(_Strict):
    max_parallel: int = Field(20, ge=1, le=1000, description="evacuations in flight at once")
    evacuate_timeout: float = Field(300.0, gt=0)
    retries: int = Field(2, ge=0, le=10, description="re-tries on another target per instance")
    fence_timeout: float = Field(10.0, gt=0, le=300)
    fence_attempts: int = Field(2, ge=1, le=10, description="attempts per device per level")
    rejoin: Literal["auto", "manual"] = "auto"


class NetworkConfig(_Strict):
    """Network HA (docs/network-ha.md): routers and DHCP off dead Neutron agents."""

    enabled: bool = Field(True, description="watch Neutron's agents and re-home their work")
    fence_nodes: bool = Field(True, description="fence failed network nodes like compute hosts")
    stale_after: float = Field(
        25.0, gt=0, description="an agent heartbeat older than this is down (> report_interval)"
    )
    agent_grace: float = Field(
        60.0, gt=0, description="an agent down this long with its host up counts as dead"
    )
    unfenced_moves: bool = Field(
        False, description="move legacy routers off nodes not proven off (risk: two copies)"
    )
    unfenced_grace: float = Field(300.0, gt=0)
    dhcp_agents_per_network: int = Field(2, ge=1, le=10)
    max_parallel: int = Field(100, ge=1, le=1000, description="router/network moves in flight")
    verify_timeout: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    max_dead_fraction: float = Field(0.5, gt=0, le=1)

    def settings(self) -> NetSettings:
        return NetSettings(
            stale_after=self.stale_after,
            agent_grace=self.agent_grace,
            unfenced_moves=self.unfenced_moves,
            unfenced_grace=self.unfenced_grace,
            dhcp_agents_per_network=self.dhcp_agents_per_network,
            max_parallel=self.max_parallel,
            verify_timeout=self.verify_timeout,
            retries=self.retries,
            max_dead_fraction=self.max_dead_fraction,
        )


class ProbeTarget(_Strict):
    address: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)


class FenceLevel(_Strict):
    devices: tuple[dict[str, Any], ...] = Field(min_length=1)


class HostConfig(_Strict):
    fencing: tuple[FenceLevel, ...] = ()
    probe: ProbeTarget | None = None


class Config(_Strict):
    cloud: CloudConfig
    profile: Literal["default", "fast"] = "default"
    detection: DetectionOverrides = DetectionOverrides()
    controller: ControllerConfig = ControllerConfig()
    store: StoreConfig = StoreConfig()
    guards: GuardsConfig = GuardsConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    network: NetworkConfig = NetworkConfig()
    agents: AgentsConfig = AgentsConfig()
    api: ApiConfig = ApiConfig()
    segments: tuple[SegmentConfig, ...] = (SegmentConfig(name="default", hosts=("*",)),)
    hosts: dict[str, HostConfig] = {}

    @field_validator("segments")
    @classmethod
    def _unique_segments(cls, segments: tuple[SegmentConfig, ...]) -> tuple[SegmentConfig, ...]:
        names = [s.name for s in segments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"segment names must be unique: {', '.join(dupes)}")
        return segments

    # ------------------------------------------------------------ derived views

    def detection_profile(self) -> DetectionProfile:
        base = PROFILES[self.profile]
        overrides = {
            k: v
            for k, v in self.detection.model_dump().items()
            if v is not None and k != "probe_timeout"
        }
        return DetectionProfile(**{**base.__dict__, **overrides})

    def guard_policy(self) -> GuardPolicy:
        g = self.guards
        return GuardPolicy(
            budgets=tuple(Budget(b.kind, b.max_hosts, b.max_percent, b.window) for b in g.budgets),
            max_fences_per_tick=g.max_fences_per_tick,
            cliff_hosts=g.cliff_hosts,
            cliff_percent=g.cliff_percent,
            cliff_window=g.cliff_window,
            min_visible_fraction=g.min_visible_fraction,
        )

    def segment_of(self, host: str) -> SegmentConfig | None:
        """The first segment whose patterns match ``host`` (None: the host is not protected)."""
        for segment in self.segments:
            if any(fnmatch.fnmatchcase(host, p) for p in segment.hosts):
                return segment
        return None

    def is_spare(self, host: str) -> bool:
        segment = self.segment_of(host)
        return segment is not None and any(
            fnmatch.fnmatchcase(host, p) for p in segment.spare_hosts
        )


def parse_config(data: Any, *, source: str = "config") -> Config:
    """Validate ``data`` (parsed YAML); ConfigError lists every problem found."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: must be a mapping at the top level")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid configuration\n" + _describe(exc)) from None
    problems = _check_fence_devices(config)
    if problems:
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(problems))
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, source=str(p))


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        place = _place(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {place}: {message}")
    return "\n".join(lines)


def _place(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _check_fence_devices(config: Config) -> list[str]:
    """Build every fence device once, so a bad entry is reported now, not at 3 a.m."""
    from hastack.drivers.fencing.factory import build_fence_device  # noqa: PLC0415

    problems = []
    for host, hc in sorted(config.hosts.items()):
        for n, level in enumerate(hc.fencing):
            for d, spec in enumerate(level.devices):
                where = f"hosts.{host}.fencing[{n}].devices[{d}]"
                if isinstance(spec, Mapping) and spec.get("type") == "watchdog":
                    if n != len(hc.fencing) - 1 or len(level.devices) != 1:
                        problems.append(f"  {where}: a watchdog must be alone on the last level")
                    if config.agents.listen is None:
                        problems.append(f"  {where}: a watchdog needs agents.listen (the agents)")
                try:
                    build_fence_device(spec, where=where)
                except ValueError as exc:
                    problems.append(f"  {exc}")
    return problems
