"""Dynamic configuration (hastack.dynamic): the whitelist, merging over the file and validating
the whole, compare-and-set writes, and the engine following the stored document tick by tick."""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from hastack import dynamic
from hastack.clock import VirtualClock
from hastack.config import Config, load_config, parse_config
from hastack.controller import build_settings, build_topology
from hastack.drivers.store.sqlite import SqliteStore
from hastack.engine.engine import Engine, EngineOptions
from hastack.errors import ConfigError, RevisionConflict
from hastack.ports.store import Entry, Lease
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.drivers import SimCompute
from hastack.sim.scenario import SimProbe
from hastack.sim.world import World

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "etc" / "hastack.yaml.sample"


@pytest.fixture
def base() -> Config:
    return parse_config({"cloud": {"name": "sim"}})


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "hastack.db", VirtualClock())
    yield s
    s.close()


# ---------------------------------------------------------------- whitelist and merge


def test_every_dynamic_key_is_a_setting_of_the_file() -> None:
    for key in dynamic.DYNAMIC_KEYS:
        section, _, leaf = key.partition(".")
        assert section in Config.model_fields, key
        if leaf:
            model = Config.model_fields[section].annotation
            assert leaf in model.model_fields, key  # type: ignore[union-attr]
    assert list(dynamic.effective(load_config(SAMPLE))) == list(dynamic.DYNAMIC_KEYS)


def test_an_override_is_merged_over_the_file_and_nothing_else_moves() -> None:
    config = load_config(SAMPLE)
    merged = dynamic.merge(config, {"recovery.max_parallel": 3, "profile": "fast"})
    assert merged.recovery.max_parallel == 3 and merged.profile == "fast"
    assert merged.detection_profile().name == "fast"
    assert merged.recovery.evacuate_timeout == config.recovery.evacuate_timeout
    assert merged.hosts == config.hosts and merged.segments == config.segments
    assert merged.controller == config.controller and merged.store == config.store
    assert dynamic.changes(config, merged) == [
        f"profile {config.profile} -> fast",
        f"recovery.max_parallel {config.recovery.max_parallel} -> 3",
    ]


def test_an_invalid_value_is_refused_with_the_models_own_error(base: Config) -> None:
    with pytest.raises(ConfigError) as err:
        dynamic.merge(base, {"recovery.max_parallel": 0, "guards.budgets": [{"kind": "rack"}]})
    text = str(err.value)
    assert "recovery.max_parallel: Input should be greater than or equal to 1" in text
    assert "guards.budgets[0].kind:" in text and "guards.budgets[0].max_hosts:" in text


@pytest.mark.parametrize(
    "key", ["controller.tick", "store.path", "cloud.name", "hosts", "network.enabled", "nope"]
)
def test_a_key_outside_the_whitelist_is_refused_naming_the_allowed_ones(
    base: Config, key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        dynamic.merge(base, {key: 1})
    text = str(err.value)
    assert f"not a dynamic setting: {key} " in text
    assert "recovery.{max_parallel, evacuate_timeout" in text and "profile, detection." in text


def test_documents_are_nested_like_the_file() -> None:
    flat = {"profile": "fast", "recovery.retries": 1, "guards.cliff_hosts": 9}
    text = dynamic.to_document(flat)
    assert json.loads(text) == {
        "profile": "fast",
        "recovery": {"retries": 1},
        "guards": {"cliff_hosts": 9},
    }
    assert dynamic.parse_document(text) == flat
    assert dynamic.parse_document(None) == {} == dynamic.parse_document("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "not valid JSON"),
        ("[1]", "mapping at the top level"),
        ('{"recovery": 5}', "not a dynamic setting: recovery "),
        ('{"controller": {"tick": 2}}', "not a dynamic setting: controller.tick "),
    ],
)
def test_an_unreadable_document_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dynamic.parse_document(text)


# ---------------------------------------------------------------- writes


def test_update_stores_the_validated_values_compare_and_set(
    base: Config, store: SqliteStore
) -> None:
    done = dynamic.update(store, base, assign={"recovery.max_parallel": 5.0, "profile": "fast"})
    assert done.overrides == {"recovery.max_parallel": 5, "profile": "fast"}  # 5.0 -> 5
    assert done.changes == ["profile default -> fast", "recovery.max_parallel 20 -> 5"]
    assert dynamic.read(store) == (done.overrides, done.revision)
    again = dynamic.update(store, base, assign={"profile": "fast"})
    assert again.changes == [] and again.revision == done.revision  # nothing written
    gone = dynamic.update(store, base, unset=["profile"], expect=done.revision)
    assert gone.overrides == {"recovery.max_parallel": 5}
    assert gone.changes == ["profile fast -> default"]
    with pytest.raises(RevisionConflict):  # the operator saw an older revision
        dynamic.update(store, base, assign={"recovery.retries": 0}, expect=done.revision)
    assert dynamic.read(store) == (gone.overrides, gone.revision)


def test_an_invalid_change_writes_nothing(base: Config, store: SqliteStore) -> None:
    dynamic.update(store, base, assign={"recovery.retries": 1})
    before = store.get(dynamic.KEY)
    for assign in ({"recovery.retries": 99}, {"controller.name": "x"}, {"profile": "turbo"}):
        with pytest.raises(ConfigError):
            dynamic.update(store, base, assign=assign)
    assert store.get(dynamic.KEY) == before


class RacingStore:
    """A store where another operator writes the key between our read and our write."""

    def __init__(self, inner: SqliteStore, base: Config) -> None:
        self.inner = inner
        self.base = base

    def get(self, key: str) -> Entry | None:
        entry = self.inner.get(key)
        dynamic.update(self.inner, self.base, assign={"recovery.retries": 0})
        return entry

    def put(
        self, key: str, value: str, *, expect: int | None = None, lease: Lease | None = None
    ) -> int:
        return self.inner.put(key, value, expect=expect, lease=lease)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_concurrent_writer_is_never_overwritten(base: Config, store: SqliteStore) -> None:
    racing = RacingStore(store, base)
    with pytest.raises(RevisionConflict):
        dynamic.update(racing, base, assign={"recovery.max_parallel": 3})  # type: ignore[arg-type]
    assert dynamic.read(store)[0] == {"recovery.retries": 0}  # the other operator's write


def test_a_hand_written_document_is_repaired_not_guessed_at(
    base: Config, store: SqliteStore
) -> None:
    store.put(dynamic.KEY, '{"recovery": {"max_parallel": 0}, "profile": "fast"}')
    done = dynamic.update(store, base, unset=["recovery.max_parallel"])  # the bad value goes
    assert done.overrides == {"profile": "fast"}
    store.put(dynamic.KEY, "{garbage")
    with pytest.raises(ConfigError, match="not valid JSON"):
        dynamic.update(store, base, assign={"recovery.retries": 1})
    done = dynamic.update(store, base, reset=True)
    assert dynamic.read(store) == ({}, done.revision)


# ---------------------------------------------------------------- the engine follows the store


class Controller:
    """One engine over the simulator, wired as build_controller wires it."""

    def __init__(self, name: str, path: pathlib.Path, clock: VirtualClock, world: World) -> None:
        self.config = parse_config({"cloud": {"name": "sim"}, "controller": {"name": name}})
        topology = build_topology(self.config)
        settings = build_settings(self.config, topology)
        self.probe = SimProbe(world, settings.profile)
        self.store = SqliteStore(path, clock)
        self.engine = Engine(
            settings,
            SimCompute(world),
            [self.probe],
            topology,
            self.store,
            clock,
            EngineOptions(name, inline=True),
            hosts=world.hosts,
            net_settings=self.config.network.settings(),
            dynamic=dynamic.DynamicSettings(self.config, lambda c: build_settings(c, topology)),
        )

    def close(self) -> None:
        self.engine.close()
        self.store.close()


@pytest.fixture
def cloud(tmp_path: pathlib.Path) -> Iterator[tuple[VirtualClock, World, pathlib.Path]]:
    clock = VirtualClock()
    world = World(clock, seed=1)
    build_world(world, CloudSpec(hosts=3, instances=6, seed=1))
    yield clock, world, tmp_path / "hastack.db"


def _applied(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dynamic configuration" in r.getMessage()]


@pytest.fixture
def leader(
    cloud: tuple[VirtualClock, World, pathlib.Path], caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[VirtualClock, Controller]]:
    """One controller on the cloud, the engine's log captured."""
    clock, world, path = cloud
    ctl = Controller("ctl-1", path, clock, world)
    caplog.set_level(logging.INFO, logger="hastack.engine.engine")
    try:
        yield clock, ctl
    finally:
        ctl.close()


def test_the_leader_applies_a_change_from_the_next_tick(
    leader: tuple[VirtualClock, Controller], caplog: pytest.LogCaptureFixture
) -> None:
    clock, ctl = leader
    assert ctl.engine.tick().leader
    assert ctl.engine.settings.max_parallel == 20 and not _applied(caplog)
    assign = {"recovery.max_parallel": 5, "profile": "fast", "network.max_parallel": 7}
    rev = dynamic.update(ctl.store, ctl.config, assign=assign).revision
    clock.advance(1.0)
    ctl.engine.tick()
    assert ctl.engine.settings.max_parallel == 5
    assert ctl.engine.settings.profile.name == "fast"
    assert ctl.engine.net_settings.max_parallel == 7
    assert ctl.probe.profile.name == "fast"  # the probe counts against the new profile
    assert _applied(caplog) == [
        f"dynamic configuration revision {rev} applied: profile default -> fast; "
        "recovery.max_parallel 20 -> 5; network.max_parallel 100 -> 7"
    ]
    caplog.clear()
    clock.advance(1.0)
    ctl.engine.tick()  # same revision: nothing rebuilt, nothing logged
    assert not _applied(caplog)


def test_an_invalid_stored_document_keeps_the_settings_and_is_logged_once(
    leader: tuple[VirtualClock, Controller], caplog: pytest.LogCaptureFixture
) -> None:
    clock, ctl = leader
    dynamic.update(ctl.store, ctl.config, assign={"recovery.retries": 1})
    ctl.engine.tick()
    for bad in ('{"recovery": {"retries": 99}}', "{not json", '{"store": {"path": "/x"}}'):
        caplog.clear()
        ctl.store.put(dynamic.KEY, bad)  # by hand, past the CLI's validation
        for _ in range(2):
            clock.advance(1.0)
            report = ctl.engine.tick()
            assert report.leader, report.verdict  # still leading, still acting
        assert ctl.engine.settings.retries == 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "settings unchanged" in errors[0].getMessage()


def test_a_controller_that_leads_later_picks_up_the_overrides(
    cloud: tuple[VirtualClock, World, pathlib.Path],
) -> None:
    clock, world, path = cloud
    first = Controller("ctl-1", path, clock, world)
    second = Controller("ctl-2", path, clock, world)
    try:
        assert first.engine.tick().leader
        assert not second.engine.tick().leader
        dynamic.update(first.store, first.config, assign={"guards.max_fences_per_tick": 2})
        first.engine.tick()
        assert first.engine.settings.guards.max_fences_per_tick == 2
        assert second.engine.settings.guards.max_fences_per_tick == 5  # standby: not read
        clock.advance(11.0)  # ctl-1 stops ticking: its lease runs out
        assert second.engine.tick().leader
        assert second.engine.settings.guards.max_fences_per_tick == 2
    finally:
        first.close()
        second.close()
