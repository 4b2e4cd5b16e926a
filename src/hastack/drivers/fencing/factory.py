"""Build a fence device from its configuration (one entry of a host's ``fencing`` levels).

Shapes, as ``hastack sim serve`` writes them into ``hastack.yaml``::

    {"type": "ipmi", "address": "10.0.0.7", "port": 623, "username": "...", "password": "..."}
    {"type": "redfish", "address": "https://10.0.0.7", "system": "/redfish/v1/Systems/1",
     "verify_tls": true, "username": "...", "password": "..."}
    {"type": "agent", "agent": "fence_apc", "options": {"ip": "...", "plug": 7}, "password": "..."}
    {"type": "watchdog", "margin": 5.0, "max_wait": 120}   (self-fencing; alone, on the last level)

A bad entry raises :class:`ValueError` naming the place (``where``) and the field, never a
password's value.  Drivers are imported on demand, so configuring only agents never loads
pyghmi or sushy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hastack.ports.fencing import FenceDevice

_COMMON = frozenset({"type"})
_FIELDS: dict[str, frozenset[str]] = {
    "ipmi": frozenset({"address", "port", "username", "password"}),
    "redfish": frozenset({"address", "system", "verify_tls", "username", "password"}),
    "agent": frozenset({"agent", "options", "password"}),
    "watchdog": frozenset({"margin", "max_wait"}),
}


def build_fence_device(spec: Mapping[str, Any], *, where: str) -> FenceDevice:
    """The device ``spec`` describes; ``ValueError("<where>.<field>: ...")`` when it is wrong."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: must be a mapping with a 'type'")
    kind = spec.get("type")
    if kind not in _BUILDERS:
        choices = ", ".join(sorted(_BUILDERS))
        raise ValueError(f"{where}.type: {kind!r} is not one of {choices}")
    unknown = sorted(set(map(str, spec)) - _FIELDS[kind] - _COMMON)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) for type {kind}: {', '.join(unknown)}")
    try:
        return _BUILDERS[kind](_Fields(spec, where))
    except ValueError as error:
        message = str(error)
        if message.startswith(where):
            raise
        raise ValueError(f"{where}.{message}") from None  # driver messages start with the field


class _Fields:
    """Typed access to one spec's fields, with errors that name them."""

    def __init__(self, spec: Mapping[str, Any], where: str) -> None:
        self.spec = spec
        self.where = where

    def _fail(self, field: str, problem: str) -> ValueError:
        return ValueError(f"{self.where}.{field}: {problem}")

    def text(self, field: str, default: str | None = None, *, secret: bool = False) -> str:
        value = self.spec.get(field, default)
        if value is None:
            raise self._fail(field, "is required")
        if not isinstance(value, str) or not value:
            shown = "the value given" if secret else repr(value)
            raise self._fail(field, f"must be a non-empty string, not {shown}")
        if any(c in value for c in "\r\n\0"):
            raise self._fail(field, "must not contain line breaks")
        return value

    def optional_text(self, field: str, *, secret: bool = False) -> str | None:
        return self.text(field, secret=secret) if self.spec.get(field) is not None else None

    def integer(self, field: str, default: int, low: int, high: int) -> int:
        value = self.spec.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fail(field, f"must be an integer from {low} to {high}, not {value!r}")
        return value

    def flag(self, field: str, default: bool) -> bool:
        value = self.spec.get(field, default)
        if not isinstance(value, bool):
            raise self._fail(field, f"must be true or false, not {value!r}")
        return value

    def number(self, field: str, default: float, low: float, high: float) -> float:
        value = self.spec.get(field, default)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise self._fail(field, f"must be a number from {low:g} to {high:g}, not {value!r}")
        return float(value)

    def mapping(self, field: str) -> Mapping[str, Any]:
        value = self.spec.get(field, {})
        if not isinstance(value, Mapping):
            raise self._fail(field, f"must be a mapping of option names to values, not {value!r}")
        return value


def _ipmi(fields: _Fields) -> FenceDevice:
    from hastack.drivers.fencing.ipmi import IpmiFencer  # noqa: PLC0415 (pyghmi on demand)

    return IpmiFencer(
        fields.text("address"),
        fields.text("username"),
        fields.text("password", secret=True),
        port=fields.integer("port", 623, 1, 65535),
    )


def _redfish(fields: _Fields) -> FenceDevice:
    from hastack.drivers.fencing.redfish import RedfishFencer  # noqa: PLC0415 (sushy on demand)

    address = fields.text("address")
    username, password = fields.text("username"), fields.text("password", secret=True)
    system, verify_tls = fields.optional_text("system"), fields.flag("verify_tls", True)
    try:
        return RedfishFencer(address, username, password, system=system, verify_tls=verify_tls)
    except ValueError as error:  # the driver calls the address its url
        raise ValueError(str(error).replace("url:", "address:", 1)) from None


def _agent(fields: _Fields) -> FenceDevice:
    from hastack.drivers.fencing.agent import FenceAgentFencer  # noqa: PLC0415

    agent = fields.text("agent")
    options = fields.mapping("options")
    password = fields.optional_text("password", secret=True)
    # The driver checks the agent name and every option; its messages start with the field.
    return FenceAgentFencer(agent, dict(options), password)


def _watchdog(fields: _Fields) -> FenceDevice:
    from hastack.drivers.fencing.watchdog import WatchdogFence  # noqa: PLC0415

    return WatchdogFence(
        margin=fields.number("margin", 5.0, 0.0, 600.0),
        max_wait=fields.number("max_wait", 120.0, 1.0, 3600.0),
    )


_BUILDERS: dict[str, Callable[[_Fields], FenceDevice]] = {
    "ipmi": _ipmi,
    "redfish": _redfish,
    "agent": _agent,
    "watchdog": _watchdog,
}
