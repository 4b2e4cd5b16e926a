"""``hastack event list``: the audit trail (hastack.engine.audit), read from the store."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

from hastack.cli.output import add_format_options, render_rows
from hastack.cli.serve import ServeError, _store

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: Any) -> None:
    event = sub.add_parser("event", help="the audit trail: decisions, refusals, requests")
    esub = event.add_subparsers(dest="event_command", metavar="COMMAND")
    esub.required = True
    lst = esub.add_parser("list", help="list audit entries, oldest first")
    lst.add_argument("--config", type=Path, required=True, dest="config_file")
    lst.add_argument("--host", help="only entries about this host (or agent, network, cluster)")
    lst.add_argument("--since", type=duration, help="only the last DURATION: 90s, 10m, 2h, 1d")
    lst.add_argument("--limit", type=int, default=50, help="the newest N (0: all; default 50)")
    add_format_options(lst)
    lst.set_defaults(func=cmd_event_list)


def duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 10m, 2h, 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def cmd_event_list(args: argparse.Namespace) -> int:
    from hastack.engine.audit import AuditTrail  # noqa: PLC0415
    from hastack.errors import HastackError  # noqa: PLC0415

    if args.limit < 0:
        raise ServeError("--limit must be 0 (all) or more")
    store = _store(args.config_file)
    try:
        since = time.time() - args.since if args.since is not None else None
        entries = AuditTrail(store).read(since=since, subject=args.host, limit=args.limit or None)
    except HastackError as exc:
        raise ServeError(str(exc)) from None
    finally:
        store.close()
    rows = [
        {
            "at": dt.datetime.fromtimestamp(e.at).isoformat(sep=" ", timespec="seconds"),
            "subject": e.subject,
            "kind": e.kind,
            "by": e.by,
            "message": e.message,
        }
        for e in entries
    ]
    print(render_rows(rows, ["at", "subject", "kind", "by", "message"], args.format, args.column))
    return 0
