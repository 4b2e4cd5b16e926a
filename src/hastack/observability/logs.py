"""Logs: text for a terminal, JSON lines for a log pipeline, and one line per engine tick.

Context travels as ``extra`` fields (``log.info("fenced", extra={"host": h, "epoch": e})``):
in JSON they are keys of the line's object, in text a ``[host=compute03 epoch=4]`` suffix.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any, Literal

from hastack.engine.engine import TickReport

TICK_LOGGER = "hastack.tick"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A LogRecord's own attributes; anything else on a record came from ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields a caller gave ``record``, in the order given."""
    return {
        k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, logger, message, the caller's
    ``extra`` fields, and ``exception`` (the traceback) when there is one.  An extra field
    named like one of the four keeps its value under a trailing underscore (``level_``);
    values JSON cannot hold are written as their ``str()``."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, Any] = {
            "ts": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            doc[f"{key}_" if key in doc else key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, then the ``extra`` fields as ``[key=value ...]`` (a value with spaces
    quoted; a field that only repeats the message is left out), then any traceback."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        fields = [f"{k}={_text(v)}" for k, v in extra_fields(record).items() if v != record.message]
        return f"{line} [{' '.join(fields)}]" if fields else line


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or " " in text else text


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler :func:`setup_logging` installs, told apart from anyone else's."""


def setup_logging(
    fmt: Literal["text", "json"], level: int, *, stream: IO[str] | None = None
) -> None:
    """Configure the root logger: one handler writing ``fmt`` to ``stream`` (stderr), at
    ``level``.  Called again, it replaces its own handler; other handlers (a test runner's
    capture) are left in place.  ValueError for an unknown format."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}: choose text or json")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
        handler.close()
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings as log lines too: JSON output stays JSON


class TickLogger:
    """An engine listener writing one line per tick to ``hastack.tick`` at INFO: the verdict
    as the message, and the fields controller, leader, verdict, events (how many), runs
    (actions started) and elapsed_ms.

    ``every_tick`` True (for JSON logs): every tick, so a pipeline can follow each pass of
    the loop.  False (for text logs): only a tick whose verdict differs from the previous one
    (a role change changes the verdict too), so a terminal is not flooded once a second."""

    def __init__(self, controller: str, *, every_tick: bool) -> None:
        self.controller = controller
        self.every_tick = every_tick
        self.log = logging.getLogger(TICK_LOGGER)
        self._last: str | None = None

    def __call__(self, report: TickReport) -> None:
        changed = report.verdict != self._last
        self._last = report.verdict
        if not (self.every_tick or changed):
            return
        fields = {
            "controller": self.controller,
            "leader": report.leader,
            "verdict": report.verdict,
            "events": len(report.events),
            "runs": report.runs,
            "elapsed_ms": round(report.elapsed * 1000, 1),
        }
        self.log.info("%s", report.verdict, extra=fields)
