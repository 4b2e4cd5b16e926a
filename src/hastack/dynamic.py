"""Cluster-wide dynamic configuration: settings every controller must agree on, changed at run
time without a restart (Patroni's "dynamic configuration" in its DCS).

The overrides are one JSON document under :data:`KEY` in the store (etcd with several
controllers, sqlite with one), shaped like the YAML file's sections
(``{"profile": "fast", "recovery": {"max_parallel": 5}}``).  Whoever leads applies them over
its file configuration from its next tick on (:class:`DynamicSettings`); ``hastack config
set/unset/show`` edit and read them (:func:`update`, :func:`read`).

Only the keys in :data:`DYNAMIC_KEYS` may be overridden: the policy knobs that must be the same
on every controller and that the engine re-reads at each tick.  Not dynamic: what is per
controller or fixed when a controller starts (``controller.*``, ``store.*``, ``cloud.*``, the
``hosts`` fence devices and their secrets, ``segments``, ``detection.probe_timeout``,
``recovery.fence_timeout``, ``network.enabled``).

Every change is validated by merging it over the file configuration and validating the whole
result with the file's own models (:func:`merge`); a change that fails is refused with the
place and the problem, and nothing is written.  Writes are compare-and-set on the key's
revision, so two operators never overwrite each other silently.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hastack.config import Config, parse_config
from hastack.errors import ConfigError, RevisionConflict
from hastack.policy.netrecovery import NetSettings
from hastack.policy.recovery import Settings
from hastack.ports.store import Store

KEY = "/hastack/config/dynamic"

DYNAMIC_KEYS: tuple[str, ...] = (
    # detection: how fast a host is declared failed (the probe's socket timeout is not here:
    # it is fixed when the probe driver is built)
    "profile",
    "detection.nova_stale_after",
    "detection.probe_failures",
    "detection.agent_stale_after",
    "detection.confirm_after",
    "detection.probe_interval",
    "detection.bmc_interval",
    "detection.nova_interval",
    # guards: budgets and the cliff
    "guards.budgets",
    "guards.max_fences_per_tick",
    "guards.cliff_hosts",
    "guards.cliff_percent",
    "guards.cliff_window",
    "guards.min_visible_fraction",
    # instance recovery (fence_timeout is not here: it sizes the BMC reads at start)
    "recovery.max_parallel",
    "recovery.evacuate_timeout",
    "recovery.retries",
    "recovery.fence_attempts",
    "recovery.rejoin",
    # network HA (enabled is not here: it decides at start whether Neutron is watched)
    "network.fence_nodes",
    "network.stale_after",
    "network.agent_grace",
    "network.unfenced_moves",
    "network.unfenced_grace",
    "network.dhcp_agents_per_network",
    "network.max_parallel",
    "network.verify_timeout",
    "network.retries",
    "network.max_dead_fraction",
)

_SOURCE = "dynamic configuration"


# ---------------------------------------------------------------- pure: documents and merging


def check_keys(keys: Iterable[str]) -> None:
    """ConfigError naming every key that is not dynamic, and the keys that are."""
    wrong = sorted(set(keys) - set(DYNAMIC_KEYS))
    if wrong:
        raise ConfigError(
            f"not a dynamic setting: {', '.join(wrong)} "
            f"(change it in the configuration file and restart); "
            f"dynamic settings: {_grouped(DYNAMIC_KEYS)}"
        )


def _grouped(keys: Iterable[str]) -> str:
    """``profile, recovery.{max_parallel, retries}``: the allowed keys, readable in one line."""
    sections: dict[str, list[str]] = {}
    for key in keys:
        section, _, leaf = key.partition(".")
        sections.setdefault(section, []).append(leaf)
    return ", ".join(
        f"{s}.{{{', '.join(leaves)}}}" if any(leaves) else s for s, leaves in sections.items()
    )


def parse_document(text: str | None) -> dict[str, Any]:
    """The stored document as flat overrides (``{"recovery.max_parallel": 5}``); ConfigError
    when it is not JSON, not shaped like the file's sections, or overrides a key that is not
    dynamic.  ``None`` (no document) is no override."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{_SOURCE}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{_SOURCE}: must be a mapping at the top level")
    flat: dict[str, Any] = {}
    for section, value in data.items():
        if section in DYNAMIC_KEYS:
            flat[section] = value
        elif isinstance(value, dict):
            flat.update({f"{section}.{key}": v for key, v in value.items()})
        else:
            flat[section] = value  # refused by check_keys below, by its name
    check_keys(flat)
    return flat


def to_document(overrides: Mapping[str, Any]) -> str:
    """Flat overrides as the stored JSON document, nested like the file's sections."""
    nested: dict[str, Any] = {}
    for key, value in sorted(overrides.items()):
        section, _, leaf = key.partition(".")
        if leaf:
            nested.setdefault(section, {})[leaf] = value
        else:
            nested[section] = value
    return json.dumps(nested, sort_keys=True)


def merge(base: Config, overrides: Mapping[str, Any]) -> Config:
    """``base`` with ``overrides`` (flat, dynamic keys only) applied, validated as a whole by
    the file's own models: ConfigError gives the place and the problem of each error."""
    check_keys(overrides)
    data = base.model_dump(mode="json")
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        if leaf:
            data[section][leaf] = value
        else:
            data[section] = value
    return parse_config(data, source=_SOURCE)


def effective(config: Config, keys: Iterable[str] = DYNAMIC_KEYS) -> dict[str, Any]:
    """The values ``config`` gives the dynamic ``keys``, in their JSON form."""
    data = config.model_dump(mode="json")
    out = {}
    for key in keys:
        section, _, leaf = key.partition(".")
        out[key] = data[section][leaf] if leaf else data[section]
    return out


def changes(old: Config, new: Config) -> list[str]:
    """``key old -> new`` for each dynamic key whose value differs."""
    before, after = effective(old), effective(new)
    return [
        f"{key} {_show(before[key])} -> {_show(after[key])}"
        for key in DYNAMIC_KEYS
        if before[key] != after[key]
    ]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------- the store


def read(store: Store) -> tuple[dict[str, Any], int]:
    """The stored overrides (flat) and the key's revision (0: none stored)."""
    entry = store.get(KEY)
    if entry is None:
        return {}, 0
    return parse_document(entry.value), entry.revision


@dataclasses.dataclass(frozen=True)
class Update:
    revision: int  # the key's revision now (unchanged when nothing was written)
    overrides: dict[str, Any]
    changes: list[str]  # as :func:`changes` words them; empty: nothing written


def update(
    store: Store,
    base: Config,
    *,
    assign: Mapping[str, Any] | None = None,
    unset: Iterable[str] = (),
    reset: bool = False,
    expect: int | None = None,
) -> Update:
    """Set ``assign`` and remove ``unset`` (``reset``: every key) in the stored overrides,
    compare-and-set on the revision read, or on ``expect`` (the revision the operator saw).

    Raises ConfigError (a key not dynamic, or the merged result invalid) and RevisionConflict
    (someone wrote since); either way nothing is written.  A stored document that is not
    readable (written by hand) is only replaced with ``reset``, never guessed at.
    """
    assign = dict(assign or {})
    unset = set(unset)
    check_keys([*assign, *unset])
    entry = store.get(KEY)
    revision = entry.revision if entry else 0
    if expect is not None and expect != revision:
        raise RevisionConflict(KEY, expect, revision)
    current = {} if reset else parse_document(entry.value if entry else None)
    try:
        old = merge(base, current)
    except ConfigError:
        old = base  # an invalid stored value: this update may repair it
    wanted = {k: v for k, v in current.items() if k not in unset} | assign
    new = merge(base, wanted)
    # store what validation made of each value (5.0 -> 5, a budget with its defaults)
    wanted = effective(new, wanted)
    document = to_document(wanted)
    if document == (entry.value if entry else to_document({})):
        return Update(revision, wanted, [])
    revision = store.put(KEY, document, expect=revision)
    return Update(revision, wanted, changes(old, new) or ["no effective value changed"])


# ---------------------------------------------------------------- the engine's view


class DynamicSettings:
    """What the engine follows: the file's configuration, and the settings a stored document
    gives over it (``build`` turns a Config into the core's Settings, as the composition root
    does).  Implements :class:`hastack.engine.engine.Reconfigure`."""

    key = KEY

    def __init__(self, base: Config, build: Callable[[Config], Settings]) -> None:
        self.base = base
        self.current = base  # what the engine runs with now
        self._build = build

    def apply(self, document: str | None) -> tuple[Settings, NetSettings, str]:
        """The settings ``document`` gives, and a line naming what changed; ConfigError when
        the document is invalid (the current settings then stay)."""
        new = merge(self.base, parse_document(document))
        settings = self._build(new)
        described = changes(self.current, new)
        self.current = new
        return settings, new.network.settings(), "; ".join(described) or "no change"
