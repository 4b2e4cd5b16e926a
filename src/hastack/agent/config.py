"""The node agent's configuration: one small YAML file per node (etc/hastack-agent.yaml.sample).

``load_agent_config(path)`` returns an :class:`AgentConfig` or raises
:class:`~hastack.errors.ConfigError` listing every problem as ``place: problem``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hastack.agent.protocol import parse_address
from hastack.errors import ConfigError

CONTROLLER_PORT = 7420
AGENT_PORT = 7421


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckConfig(_Strict):
    """One local check: a systemd unit that must be active, or a command that must exit 0."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@:-]+$")
    systemd: str | None = Field(None, min_length=1, description="unit name, e.g. libvirtd.service")
    command: tuple[str, ...] | None = Field(None, min_length=1, description="argv, no shell")
    timeout: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _one_kind(self) -> CheckConfig:
        if (self.systemd is None) == (self.command is None):
            raise ValueError("give exactly one of systemd (a unit) or command (an argv list)")
        return self


class SelfFenceConfig(_Strict):
    """Off by default.  When on, the node resets itself through a watchdog when it has heard no
    leader for ``after`` seconds and no peer says the controllers are gone for all."""

    enabled: bool = False
    after: float = Field(30.0, gt=0, le=3600, description="seconds without a leader's ack")
    watchdog: str = Field(
        "/dev/watchdog", min_length=1, description="a watchdog device, or 'soft' for the fallback"
    )
    timeout: int = Field(10, ge=1, le=600, description="the watchdog period, seconds")
    soft_action: tuple[str, ...] = Field(
        ("systemctl", "reboot", "--force", "--force"),
        min_length=1,
        description="what the software watchdog runs when it fires (argv, no shell)",
    )
    peers: dict[str, str] = Field(
        {}, description="peer host name -> its agent's address[:port], asked before self-fencing"
    )

    @field_validator("peers")
    @classmethod
    def _peer_addresses(cls, peers: dict[str, str]) -> dict[str, str]:
        for host, address in peers.items():
            if not host:
                raise ValueError("a peer needs a host name")
            if parse_address(address, AGENT_PORT)[1] == 0:
                raise ValueError(f"peer {host}: {address!r} needs a port, not 0")
        return peers


class AgentConfig(_Strict):
    host: str = Field(
        default_factory=socket.gethostname, min_length=1, description="as Nova/Neutron know it"
    )
    controllers: tuple[str, ...] = Field(min_length=1, description="address[:port] of each")
    key_file: str = "/etc/hastack/agent.key"
    listen: str = Field(f"0.0.0.0:{AGENT_PORT}", description="for acks and peers' questions")
    interval: float = Field(1.0, gt=0, le=60, description="seconds between heartbeats")
    check_interval: float = Field(5.0, gt=0, le=3600)
    checks: tuple[CheckConfig, ...] = ()
    self_fence: SelfFenceConfig = SelfFenceConfig()

    @field_validator("controllers")
    @classmethod
    def _controllers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if parse_address(address, CONTROLLER_PORT)[1] == 0:
                raise ValueError(f"{address!r}: a controller needs a port, not 0")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_address(value, AGENT_PORT)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique: {', '.join(dupes)}")
        if self.self_fence.enabled and self.self_fence.after < 3 * self.interval:
            raise ValueError(
                f"self_fence.after ({self.self_fence.after:g}s) must be at least 3 heartbeat "
                f"intervals ({3 * self.interval:g}s): a lost datagram must not reset a node"
            )
        return self

    def controller_addresses(self) -> list[tuple[str, int]]:
        return [parse_address(a, CONTROLLER_PORT) for a in self.controllers]

    def listen_address(self) -> tuple[str, int]:
        return parse_address(self.listen, AGENT_PORT)

    def peer_addresses(self) -> dict[str, tuple[str, int]]:
        return {h: parse_address(a, AGENT_PORT) for h, a in self.self_fence.peers.items()}


def parse_agent_config(data: Any, *, source: str = "agent config") -> AgentConfig:
    from hastack.config import _describe  # noqa: PLC0415 (one error format for both files)

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping at the top level")
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid configuration\n" + _describe(exc)) from None


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_agent_config(data, source=str(p))
