"""Structured logs (hastack.observability.logs): the root logger configured for text or JSON,
every JSON line parsed back, and the per-tick line of the real engine in virtual time."""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from hastack.engine.engine import TickReport
from hastack.observability.logs import TICK_LOGGER, TickLogger, setup_logging
from hastack.sim.build import CloudSpec
from hastack.sim.scenario import Fault, Scenario, ScenarioSpec


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """Where setup_logging writes; the root logger as it was, afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, each parsed as one JSON object."""
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_json_line_carries_time_level_logger_message_and_the_callers_fields(
    out: io.StringIO,
) -> None:
    setup_logging("json", logging.INFO, stream=out)
    log = logging.getLogger("hastack.engine.engine")
    before = datetime.datetime.now(datetime.UTC)
    log.info("fenced %s", "compute03", extra={"host": "compute03", "epoch": 4, "verdict": "x"})
    log.debug("not at INFO")
    (line,) = lines(out)
    assert line == {
        "ts": line["ts"],
        "level": "INFO",
        "logger": "hastack.engine.engine",
        "message": "fenced compute03",
        "host": "compute03",
        "epoch": 4,
        "verdict": "x",
    }
    assert line["ts"].endswith("Z")
    at = datetime.datetime.fromisoformat(line["ts"])
    assert at.utcoffset() == datetime.timedelta(0)
    assert before - datetime.timedelta(seconds=1) <= at <= datetime.datetime.now(datetime.UTC)


def test_a_json_line_holds_the_traceback_and_stays_one_line(out: io.StringIO) -> None:
    setup_logging("json", logging.INFO, stream=out)
    log = logging.getLogger("hastack.test")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("tick failed\non two lines", extra={"level": "mine", "at": object()})
    (line,) = lines(out)
    assert line["message"] == "tick failed\non two lines"
    assert line["level"] == "ERROR" and line["level_"] == "mine"  # the caller's field kept
    assert line["at"].startswith("<object object at")  # not JSON: its str()
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: bad\nvalue" in line["exception"]


def test_text_lines_show_the_callers_fields_after_the_message(out: io.StringIO) -> None:
    setup_logging("text", logging.INFO, stream=out)
    log = logging.getLogger("hastack.test")
    log.info("fenced", extra={"host": "compute03", "reason": "power off", "leader": True})
    log.warning("plain")
    first, second = out.getvalue().splitlines()
    assert first.endswith(
        ' INFO hastack.test: fenced [host=compute03 reason="power off" leader=true]'
    )
    assert second.endswith(" WARNING hastack.test: plain")


def test_setting_up_again_replaces_its_own_handler_and_leaves_others(
    out: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    first = io.StringIO()
    setup_logging("text", logging.INFO, stream=first)
    setup_logging("json", logging.WARNING, stream=out)
    log = logging.getLogger("hastack.test")
    with caplog.at_level(logging.WARNING):
        log.warning("once")
        log.info("below the level")
    assert first.getvalue() == ""
    assert [line["message"] for line in lines(out)] == ["once"]
    assert [r.getMessage() for r in caplog.records] == ["once"]  # pytest's handler still there


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging("xml", logging.INFO)  # type: ignore[arg-type]


# ---------------------------------------------------------------- one line per tick


def run_with(every_tick: bool, fmt: str, out: io.StringIO) -> list[TickReport]:
    """A power loss in virtual time, the tick logger attached; the reports, as the engine gave
    them to its listeners."""
    setup_logging(fmt, logging.INFO, stream=out)  # type: ignore[arg-type]
    spec = ScenarioSpec(cloud=CloudSpec(hosts=6, instances=20, seed=2),
                        faults=[Fault(5, "compute03", "power")])  # fmt: skip
    reports: list[TickReport] = []
    with Scenario(spec) as s:
        s.engine.listeners += [reports.append, TickLogger("ctl-1", every_tick=every_tick)]
        assert s.run(300, until=lambda sc: sc.state_of("compute03") == "recovered")
    return reports


def test_json_mode_writes_exactly_one_line_per_tick(out: io.StringIO) -> None:
    reports = run_with(True, "json", out)
    everything = lines(out)  # the engine's own lines too: every one is JSON
    ticks = [line for line in everything if line["logger"] == TICK_LOGGER]
    assert len(ticks) == len(reports) > 10
    assert len(everything) > len(ticks)
    for line, report in zip(ticks, reports, strict=True):
        assert line["level"] == "INFO"
        assert line["message"] == line["verdict"] == report.verdict
        assert line["controller"] == "ctl-1"
        assert line["leader"] is True
        assert line["events"] == len(report.events)
        assert line["runs"] == report.runs
        assert line["elapsed_ms"] == round(report.elapsed * 1000, 1)
    assert any(line["events"] > 0 for line in ticks) and any(line["runs"] > 0 for line in ticks)


def test_text_mode_writes_a_tick_only_when_its_verdict_changed(out: io.StringIO) -> None:
    reports = run_with(False, "text", out)
    changes = [
        r.verdict for n, r in enumerate(reports) if n == 0 or r.verdict != reports[n - 1].verdict
    ]
    assert 1 < len(changes) < len(reports)
    ticks = [line for line in out.getvalue().splitlines() if f" {TICK_LOGGER}: " in line]
    assert len(ticks) == len(changes)
    for line, verdict in zip(ticks, changes, strict=True):
        assert f" INFO {TICK_LOGGER}: {verdict} [controller=ctl-1 leader=true events=" in line
        assert " runs=" in line and " elapsed_ms=" in line
        assert "verdict=" not in line  # the message is the verdict: not repeated
