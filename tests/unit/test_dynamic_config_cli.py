"""``hastack config show|set|unset`` over the sqlite store named by ``--config``."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from hastack import dynamic
from hastack.cli.main import main
from hastack.clock import SystemClock
from hastack.drivers.store.sqlite import SqliteStore


@pytest.fixture
def conf(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "hastack.yaml"
    data = {"cloud": {"name": "sim"}, "store": {"path": str(tmp_path / "hastack.db")}}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def stored(conf: str) -> tuple[str, int] | None:
    path = yaml.safe_load(pathlib.Path(conf).read_text())["store"]["path"]
    store = SqliteStore(path, SystemClock())
    try:
        entry = store.get(dynamic.KEY)
    finally:
        store.close()
    return (entry.value, entry.revision) if entry else None


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_set_show_unset_round_trip(conf: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "show", "--config", conf)
    assert code == 0 and "no dynamic overrides stored" in out
    code, out, _ = run(
        capsys, "config", "set", "--config", conf, "recovery.max_parallel=5", "profile=fast"
    )
    assert code == 0
    assert "profile default -> fast" in out and "recovery.max_parallel 20 -> 5" in out
    code, out, _ = run(capsys, "config", "show", "--config", conf, "-f", "json")
    assert json.loads(out) == [
        {"key": "profile", "value": "fast"},
        {"key": "recovery.max_parallel", "value": 5},
    ]
    code, out, _ = run(capsys, "config", "show", "--config", conf)
    assert "| recovery.max_parallel | 5     |" in out and "revision " in out
    code, out, _ = run(capsys, "config", "show", "--config", conf, "--effective", "-f", "json")
    rows = {r["key"]: r for r in json.loads(out)}
    assert rows["recovery.max_parallel"] == {
        "key": "recovery.max_parallel",
        "value": 5,
        "source": "dynamic",
    }
    assert rows["recovery.retries"]["source"] == "file"
    assert rows["detection.confirm_after"] == {
        "key": "detection.confirm_after",
        "value": 1.0,
        "source": "profile fast",
    }
    code, out, _ = run(capsys, "config", "unset", "--config", conf, "profile")
    assert code == 0 and "profile fast -> default" in out
    code, out, _ = run(capsys, "config", "show", "--config", conf, "-f", "value")
    assert out.strip() == "recovery.max_parallel 5"


def test_an_invalid_value_is_refused_and_nothing_is_written(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "config", "set", "--config", conf, "recovery.retries=1")
    before = stored(conf)
    code, _, err = run(capsys, "config", "set", "--config", conf, "recovery.max_parallel=0")
    assert code == 1
    assert "recovery.max_parallel: Input should be greater than or equal to 1" in err
    code, _, err = run(capsys, "config", "set", "--config", conf, "controller.tick=2")
    assert code == 1 and "not a dynamic setting: controller.tick" in err
    assert "recovery.{max_parallel" in err
    code, _, err = run(capsys, "config", "set", "--config", conf, "recovery.retries")
    assert code == 1 and "expected KEY=VALUE" in err
    code, _, err = run(capsys, "config", "unset", "--config", conf, "store.path")
    assert code == 1 and "not a dynamic setting: store.path" in err
    assert stored(conf) == before


def test_a_concurrent_writer_is_reported(conf: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "config", "set", "--config", conf, "recovery.retries=1")
    seen = stored(conf)
    assert seen is not None
    run(capsys, "config", "set", "--config", conf, "recovery.retries=0")  # someone else
    after = stored(conf)
    code, _, err = run(
        capsys, "config", "set", "--config", conf, "recovery.retries=2", f"--revision={seen[1]}"
    )
    assert code == 1
    assert "changed by someone else" in err and f"expected {seen[1]}" in err
    assert stored(conf) == after


def test_a_hand_broken_document_is_shown_as_an_error_and_reset(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = yaml.safe_load(pathlib.Path(conf).read_text())["store"]["path"]
    store = SqliteStore(path, SystemClock())
    store.put(dynamic.KEY, "{broken")
    store.close()
    code, _, err = run(capsys, "config", "show", "--config", conf)
    assert code == 1 and "not valid JSON" in err and "unset --all" in err
    code, out, _ = run(capsys, "config", "unset", "--config", conf, "--all")
    assert code == 0
    code, out, _ = run(capsys, "config", "show", "--config", conf, "-f", "json")
    assert code == 0 and json.loads(out) == []
