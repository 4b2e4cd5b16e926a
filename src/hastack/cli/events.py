"""``hastack event list``: the audit trail (hastack.engine.audit) over the REST API: decisions
with their reasons, refusals, and operator requests with the operator's name."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from hastack.cli.api_cmds import connect, connection_options, count, print_rows
from hastack.cli.output import add_format_options

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: Any) -> None:
    event = sub.add_parser("event", help="the audit trail: decisions, refusals, requests")
    esub = event.add_subparsers(dest="event_command", metavar="COMMAND", required=True)
    lst = esub.add_parser(
        "list", parents=[connection_options()], help="audit entries, the newest N, oldest first"
    )
    lst.add_argument("--host", help="only entries about this host (or agent, network, cluster)")
    lst.add_argument(
        "--since", type=since, help="only the last DURATION (90s, 10m, 2h, 1d) or since UNIX time"
    )
    lst.add_argument("--limit", type=count, default=50, help="the newest N (default 50)")
    add_format_options(lst)
    lst.set_defaults(func=cmd_event_list)


def since(text: str) -> float:
    """A UNIX time (a bare number), or a duration back from now (a number and s, m, h or d)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration such as 90s, 10m, 2h, 1d, or a UNIX time"
        )
    if not match.group(2):
        return float(match.group(1))
    return time.time() - float(match.group(1)) * _UNITS[match.group(2)]


def cmd_event_list(args: argparse.Namespace) -> int:
    events = connect(args).events(args.host, args.since, args.limit).events
    rows = [e.model_dump(mode="json") for e in reversed(events)]  # the API: newest first
    print_rows(args, rows, ["at", "subject", "kind", "by", "message"])
    return 0
