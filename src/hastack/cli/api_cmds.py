"""The operator's commands over the REST API (hastack.cli.client): ``status``, ``host ...``,
``what-if``, ``operation ...``, ``pause``, ``resume``, ``ack-cliff``; ``event list`` is in
hastack.cli.events.

Reads print a table by default, or ``-f json|yaml|value`` (json and yaml: the API's document
itself).  Actions print what the API recorded for the leader.  ``host confirm-off --wait`` and
``operation show --watch`` follow an operation, one line per change, until it has settled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hastack.api.models import (
    Accepted,
    ActionBody,
    ConfirmBody,
    HostDetail,
    OperationDetail,
    SignalView,
    Status,
    WhatIf,
)
from hastack.cli.client import DEFAULT_URL, ApiClient, ApiError, resolve_token, resolve_url
from hastack.cli.output import add_format_options, render_one, render_rows
from hastack.policy.netrecovery import NETWORK, ROUTER
from hastack.policy.recovery import EVACUATE, RECOVER

HOST_STATES = ("ok", "suspect", "failed", "fencing", "fenced", "fence_failed", "recovering",
               "recovered", "maintenance")  # fmt: skip
OP_STATES = ("open", "done", "failed", "cancelled")
HOST_COLUMNS = ["name", "state", "since", "reason", "segment", "maintenance", "operation"]
OP_COLUMNS = ["id", "kind", "host", "state", "host_state", "actions", "done", "reason", "updated"]
EVAC_COLUMNS = ["name", "instance", "target", "wave", "priority", "reason"]
TIMES = frozenset({"since", "tick_at", "created", "updated", "at"})
ACTION_KINDS = frozenset({EVACUATE, ROUTER, NETWORK})  # what OperationSummary.actions counts
POLL_FAILURES = 10  # consecutive unanswered polls a watch rides out (a leader change, a restart)


# ---------------------------------------------------------------- connection


def connection_options() -> argparse.ArgumentParser:
    """The options every API command shares (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument("--url", help=f"the hastack API (env HASTACK_URL; default {DEFAULT_URL})")
    group.add_argument("--token", help="an API token (env HASTACK_TOKEN)")
    group.add_argument("--token-file", type=Path, help="read the API token from this file")
    group.add_argument(
        "--os-cloud", help="use a Keystone token for this cloud of clouds.yaml (env OS_CLOUD)"
    )
    group.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    group.add_argument(
        "--cacert",
        type=Path,
        help="CA bundle to verify an https API with (env HASTACK_CACERT; default: system CAs)",
    )
    return parent


def connect(args: argparse.Namespace) -> ApiClient:
    token = resolve_token(args.token, args.token_file, args.os_cloud)
    cacert = args.cacert or os.environ.get("HASTACK_CACERT")
    verify = str(cacert) if cacert else True
    return ApiClient(resolve_url(args.url), token, timeout=args.timeout, verify=verify)


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (1 or more)")
    return int(text)


# ---------------------------------------------------------------- registration


def register(sub: Any) -> None:
    conn = connection_options()
    p = sub.add_parser("status", parents=[conn], help="the cluster: leader, verdict, guards")
    add_format_options(p)
    p.set_defaults(func=cmd_status)

    hsub = sub.add_parser("host", help="hosts, and the operator's levers on one")
    hosts = hsub.add_subparsers(dest="host_command", metavar="COMMAND", required=True)
    p = hosts.add_parser("list", parents=[conn], help="every host and its state")
    p.add_argument("--state", choices=HOST_STATES, help="only hosts in this state")
    add_format_options(p)
    p.set_defaults(func=cmd_host_list)
    p = hosts.add_parser("show", parents=[conn], help="one host: signals, fencing, operations")
    p.add_argument("host")
    add_format_options(p)
    p.set_defaults(func=cmd_host_show)
    for name, help_text in (
        ("maintenance-on", "put HOST in maintenance: observed, never acted on"),
        ("maintenance-off", "take HOST out of maintenance"),
        ("rejoin", "re-enable HOST in Nova after a recovery (rejoin: manual)"),
        ("confirm-off", "confirm, as an operator, that HOST is powered off (a fence proof)"),
    ):
        p = hosts.add_parser(name, parents=[conn], help=help_text)
        p.add_argument("host")
        p.add_argument("--comment", default="", help="why, for the audit trail")
        p.set_defaults(func=cmd_host_action, action=name)
    # confirm-off, the last: a wrong answer can run a VM twice, so it asks
    p.add_argument("--yes", action="store_true", help="do not ask; the answer is yes")
    p.add_argument("--wait", action="store_true", help="follow the recovery until it settles")
    p.set_defaults(func=cmd_confirm_off)

    p = sub.add_parser("what-if", parents=[conn], help="dry run: what if HOST failed now")
    p.add_argument("host")
    add_format_options(p)
    p.set_defaults(func=cmd_what_if)

    osub = sub.add_parser("operation", help="recoveries and network operations")
    ops = osub.add_subparsers(dest="operation_command", metavar="COMMAND", required=True)
    p = ops.add_parser("list", parents=[conn], help="operations, newest first")
    p.add_argument("--state", choices=OP_STATES, help="only operations in this state")
    p.add_argument("--host", help="only this host's")
    p.add_argument("--limit", type=count, help="the newest N")
    add_format_options(p)
    p.set_defaults(func=cmd_operation_list)
    p = ops.add_parser("show", parents=[conn], help="one operation: its steps and log")
    p.add_argument("id")
    p.add_argument("--watch", action="store_true", help="follow it until it settles")
    add_format_options(p)
    p.set_defaults(func=cmd_operation_show)
    for name, help_text in (
        ("retry", "retry the failed steps of an open operation"),
        ("cancel", "cancel an open operation: nothing more is done for it"),
    ):
        p = ops.add_parser(name, parents=[conn], help=help_text)
        p.add_argument("id")
        p.add_argument("--comment", default="", help="why, for the audit trail")
        p.set_defaults(func=cmd_operation_action, action=name)

    for name, help_text in (
        ("pause", "stop all automatic actions cluster-wide"),
        ("resume", "resume automatic actions"),
        ("ack-cliff", "acknowledge a cliff (mass signal loss): recoveries may start, in budget"),
    ):
        p = sub.add_parser(name, parents=[conn], help=help_text)
        p.add_argument("--comment", default="", help="why, for the audit trail")
        p.set_defaults(func=cmd_cluster, action=name)


# ---------------------------------------------------------------- reads


def cmd_status(args: argparse.Namespace) -> int:
    status = connect(args).status()
    print_doc(args, status, status_fields(status))
    return 0


def cmd_host_list(args: argparse.Namespace) -> int:
    hosts = connect(args).hosts(args.state).hosts
    print_rows(args, [h.model_dump(mode="json") for h in hosts], HOST_COLUMNS)
    return 0


def cmd_host_show(args: argparse.Namespace) -> int:
    host = connect(args).host(args.host)
    print_doc(args, host, host_fields(host))
    return 0


def cmd_what_if(args: argparse.Namespace) -> int:
    plan = connect(args).what_if(args.host)
    if args.format in ("json", "yaml"):
        print(render_one(plan.model_dump(mode="json"), args.format, args.column))
        return 0
    rows = [e.model_dump(mode="json") for e in plan.evacuations]
    for row in rows:
        row["target"] = row["target"] or "(scheduler)"
    print(render_rows(rows, EVAC_COLUMNS, args.format, args.column))
    if args.format == "table":
        print("\n".join(what_if_lines(plan)))
    return 0


def cmd_operation_list(args: argparse.Namespace) -> int:
    ops = connect(args).operations(args.state, args.host, args.limit).operations
    print_rows(args, [o.model_dump(mode="json") for o in ops], OP_COLUMNS)
    return 0


def cmd_operation_show(args: argparse.Namespace) -> int:
    api = connect(args)
    if args.watch:
        return watch(api, args.id)
    op = api.operation(args.id)
    print_doc(args, op, operation_fields(op))
    return 0


# ---------------------------------------------------------------- actions


def cmd_host_action(args: argparse.Namespace) -> int:
    method, action = {
        "maintenance-on": ("POST", "maintenance"),
        "maintenance-off": ("DELETE", "maintenance"),
        "rejoin": ("POST", "rejoin"),
    }[args.action]
    body = ActionBody(comment=args.comment)
    print_accepted(connect(args).host_action(args.host, action, body, method))
    return 0


def cmd_confirm_off(args: argparse.Namespace) -> int:
    if not args.yes and sys.stdin.isatty():
        answer = input(
            f"Confirm that {args.host} is powered off and cannot run its instances "
            "(a wrong answer can run a VM twice) [yes/no]: "
        )
        if answer.strip().lower() != "yes":
            print("not confirmed")
            return 1
    api = connect(args)
    body = ConfirmBody(confirm=True, comment=args.comment)
    print_accepted(api.host_action(args.host, "confirm-off", body))
    if not args.wait:
        return 0
    op_id = api.host(args.host).operation
    if op_id is None:
        print(f"{args.host} has no open recovery: nothing to wait for")
        return 1
    return watch(api, op_id)


def cmd_operation_action(args: argparse.Namespace) -> int:
    body = ActionBody(comment=args.comment)
    print_accepted(connect(args).operation_action(args.id, args.action, body))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    print_accepted(connect(args).cluster_action(args.action, ActionBody(comment=args.comment)))
    return 0


def print_accepted(accepted: Accepted) -> None:
    print(f"{accepted.request}: recorded for the leader (operator {accepted.by})")
    if accepted.detail:
        print(accepted.detail)


# ---------------------------------------------------------------- following an operation


class Progress:
    """What changed in an operation since the last look, as lines, in the order things happen:
    each step's state (and result; a step still pending untouched is not news), then the
    evacuations (or moves) done and failed, then the host's state that follows from them."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def update(self, op: OperationDetail) -> list[str]:
        lines: list[str] = []

        def note(key: str, value: object, text: str | None) -> None:
            if self.seen.get(key, lines) != value:  # `lines`: never seen
                self.seen[key] = value
                if text is not None:
                    lines.append(text)

        actions = [s for s in op.steps if s.kind in ACTION_KINDS]
        for step in op.steps:
            if step.kind not in ACTION_KINDS:
                news = step.state != "pending" or step.result
                result = f" ({step.result})" if step.result else ""
                text = f"{step.id}: {step.state}{result}" if news else None
                note(step.id, (step.state, step.result), text)
        if actions:
            done = sum(1 for s in actions if s.state == "done")
            failed = sum(1 for s in actions if s.state == "failed")
            noun = "evacuations" if op.kind == RECOVER else "moves"
            note("actions", (done, failed), f"{noun} {done}/{len(actions)} done, {failed} failed")
        if op.host_state:
            note("host", op.host_state, f"{op.host}: {op.host_state}")
        return lines


def settled(op: OperationDetail) -> bool:
    """Nothing more will happen without the world changing: the operation is closed, or its
    host is recovered (the operation stays open until the host comes back and rejoins)."""
    return op.state != "open" or (op.kind == RECOVER and op.host_state == "recovered")


def succeeded(op: OperationDetail) -> bool:
    failed = any(s.state == "failed" for s in op.steps if s.kind in ACTION_KINDS)
    return op.state == "done" or (op.state == "open" and settled(op) and not failed)


def watch(
    api: ApiClient,
    op_id: str,
    *,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll the operation every ``interval`` seconds, print one line per change until it has
    settled, then a summary; 0 if it succeeded, else 1."""
    progress, misses = Progress(), 0
    while True:
        try:
            op = api.operation(op_id)
            misses = 0
        except ApiError as exc:
            misses += 1
            if (exc.status is not None and exc.status < 500) or misses > POLL_FAILURES:
                raise
            print(f"{_clock()} {exc} (retrying)", flush=True)
            sleep(interval)
            continue
        for line in progress.update(op):
            print(f"{_clock()} {line}", flush=True)
        if settled(op):
            break
        sleep(interval)
    print(summary(op))
    return 0 if succeeded(op) else 1


def summary(op: OperationDetail) -> str:
    if op.state == "open":
        text = f"{op.host} {op.host_state}: {op.reason}; {op.id} stays open until it rejoins"
    else:
        text = f"operation {op.id} {op.state}: {op.reason}"
    failed = [s for s in op.steps if s.state == "failed"]
    return "\n".join([text, *(f"  {s.id} failed: {s.result}" for s in failed)])


def _clock() -> str:
    return time.strftime("%H:%M:%S")


# ---------------------------------------------------------------- rendering


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


def print_rows(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows of a list document: json and yaml as the API gave them, else times made readable."""
    if args.format in ("table", "value"):
        rows = [{k: when(v) if k in TIMES else v for k, v in r.items()} for r in rows]
    print(render_rows(rows, columns, args.format, args.column))


def print_doc(args: argparse.Namespace, doc: BaseModel, fields: Mapping[str, Any]) -> None:
    """One document: json and yaml as the API gave it, else ``fields`` (its readable form)
    as a Field/Value table."""
    if args.format in ("json", "yaml"):
        print(render_one(doc.model_dump(mode="json"), args.format, args.column))
    else:
        print(render_one(dict(fields), args.format, args.column))


def status_fields(s: Status) -> dict[str, Any]:
    g = s.guards
    budgets = [f"{b.kind} {b.domain}: {b.used}/{b.limit} in {b.window:g}s" for b in g.budgets]
    return {
        "controller": f"{s.controller} ({'leading' if s.leading else 'standby'})",
        "leader": f"{s.leader} (epoch {s.epoch})" if s.leader else "none",
        "profile": s.profile,
        "paused": s.paused,
        "verdict": s.verdict,
        "tick_at": when(s.tick_at),
        "hosts": f"{s.hosts_total} ({s.hosts_visible} visible)",
        "hosts_by_state": ", ".join(f"{k} {n}" for k, n in s.hosts_by_state.items() if n),
        "operations_open": s.operations_open,
        "halted": g.halted or "no",
        "budgets": "\n".join(budgets) or "none",
        "max_fences_per_tick": g.max_fences_per_tick,
        "cliff": f"{g.cliff_hosts} hosts or {g.cliff_percent:g}% within {g.cliff_window:g}s",
        "min_visible_fraction": g.min_visible_fraction,
    }


def host_fields(h: HostDetail) -> dict[str, Any]:
    levels = [
        f"level {n}: " + ", ".join(f"{d.name} ({d.type})" for d in level)
        for n, level in enumerate(h.fence_levels, 1)
    ]
    ops = [f"{o.id}: {o.state}, {o.host_state}, {o.done}/{o.actions} done" for o in h.operations]
    return {
        "name": h.name,
        "state": h.state,
        "since": when(h.since),
        "reason": h.reason,
        "maintenance": h.maintenance,
        "segment": h.segment or "(none: observed only)",
        "signals": "\n".join(_signal(s) for s in h.signals),
        "fence_levels": "\n".join(levels) or "none",
        "operation": h.operation,
        "operations": "\n".join(ops),
    }


def _signal(s: SignalView) -> str:
    verdict = "no data" if s.lost is None else "lost" if s.lost else "up"
    return f"{s.signal}: {verdict}" + (f" ({s.detail})" if s.detail else "")


def operation_fields(op: OperationDetail) -> dict[str, Any]:
    steps = []
    for s in op.steps:
        line = f"{s.id}: {s.state}" + (f" -> {s.target}" if s.target else "")
        line += f" ({s.result})" if s.result else ""
        steps.append(line + (f" [{s.attempts} attempts]" if s.attempts > 1 else ""))
    fields = op.model_dump(exclude={"steps", "log"})
    fields.update(created=when(op.created), updated=when(op.updated))
    return {**fields, "steps": "\n".join(steps), "log": "\n".join(map(_log_line, op.log))}


def _log_line(line: str) -> str:
    """'1712345678.123 opened: ...' with a readable time."""
    found = re.match(r"(\d{9,}\.\d+) (.*)", line)
    return f"{when(float(found.group(1)))} {found.group(2)}" if found else line


def what_if_lines(plan: WhatIf) -> list[str]:
    lines = [f"unplaceable: {s.name} ({s.instance}): {s.reason}" for s in plan.unplaceable]
    lines += [f"refused: {s.name} ({s.instance}): {s.reason}" for s in plan.refused]
    if plan.unprotected:
        names = ", ".join(s.name for s in plan.unprotected)
        lines.append(f"unprotected (left alone by policy): {names}")
    if plan.spare_hosts_used:
        lines.append(f"spare hosts used: {', '.join(plan.spare_hosts_used)}")
    lines.append(f"fencing: {plan.fencing}")
    lines.append(f"verdict: {plan.verdict}")
    return lines
