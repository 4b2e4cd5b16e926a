"""OpenStack-client style output: a table by default, or ``-f json|yaml|value``, with
``-c/--column`` to pick columns."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml", "value")


def add_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument(
        "-c", "--column", action="append", default=[], help="show only this column (repeatable)"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str, picked: Sequence[str] = ()
) -> str:
    cols = [c for c in columns if not picked or c in picked]
    data = [{c: row.get(c) for c in cols} for row in rows]
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False).rstrip()
    if fmt == "value":
        return "\n".join(" ".join(_cell(r[c]) for c in cols) for r in data)
    # a cell may hold several lines (a host's signals, an operation's steps): each its own row
    cells = [[_cell(r[c]).split("\n") for c in cols] for r in data]
    widths = [
        max([len(c)] + [len(line) for row in cells for line in row[i]]) for i, c in enumerate(cols)
    ]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(texts: Sequence[str]) -> str:
        return "| " + " | ".join(t.ljust(w) for t, w in zip(texts, widths, strict=True)) + " |"

    lines = [sep, line(cols), sep]
    for row in cells:
        for n in range(max((len(c) for c in row), default=1)):
            lines.append(line([c[n] if n < len(c) else "" for c in row]))
    lines.append(sep)
    return "\n".join(lines)


def render_one(item: dict[str, Any], fmt: str, picked: Sequence[str] = ()) -> str:
    data = {k: v for k, v in item.items() if not picked or k in picked}
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False).rstrip()
    if fmt == "value":
        return "\n".join(_cell(v) for v in data.values())
    rows = [{"Field": k, "Value": v} for k, v in data.items()]
    return render_rows(rows, ["Field", "Value"], "table")
