"""``hastack serve``, ``hastack config check`` and the operator levers that work on the store.

Until the REST API exists, operator requests (confirm a host is off, maintenance, re-enable,
pause, acknowledge a cliff) are written straight into the controller's store, which the leader
reads every tick; every request carries the operator's name and is logged by the engine.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hastack.cli.output import add_format_options, render_rows
from hastack.clock import SystemClock
from hastack.config import load_config
from hastack.errors import ConfigError, HastackError

log = logging.getLogger(__name__)


class ServeError(Exception):
    pass


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HA controller")
    serve.add_argument("--config", "-c", type=Path, required=True, help="hastack.yaml")
    serve.add_argument("--once", action="store_true", help="one tick, then exit (a dry check)")
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="configuration tools")
    csub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    csub.required = True
    check = csub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_config_check)
    from hastack.cli import config_cmd  # noqa: PLC0415 (it imports this module)

    config_cmd.register(csub)  # show, set, unset: the cluster-wide dynamic configuration

    host = sub.add_parser("host", help="operator levers on one host")
    hsub = host.add_subparsers(dest="host_command", metavar="COMMAND")
    hsub.required = True
    for name, help_text in (
        ("confirm-off", "confirm, as an operator, that HOST is powered off (a fence proof)"),
        ("maintenance-on", "put HOST in maintenance: observed, never acted on"),
        ("maintenance-off", "take HOST out of maintenance"),
        ("rejoin", "re-enable HOST in Nova after a recovery (rejoin: manual)"),
    ):
        p = hsub.add_parser(name, help=help_text)
        p.add_argument("host")
        p.add_argument("--config", "-c", type=Path, required=True)
        p.add_argument("--operator", default=getpass.getuser())
        p.add_argument("--comment", default="")
        p.set_defaults(func=cmd_host, action=name)

    for name, help_text in (
        ("pause", "stop all automatic actions cluster-wide"),
        ("resume", "resume automatic actions"),
        ("ack-cliff", "acknowledge a cliff (mass signal loss): recoveries may start, in budget"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", "-c", type=Path, required=True)
        p.add_argument("--operator", default=getpass.getuser())
        p.set_defaults(func=cmd_cluster, action=name)

    ops = sub.add_parser("operation", help="recoveries in the journal")
    osub = ops.add_subparsers(dest="operation_command", metavar="COMMAND")
    osub.required = True
    lst = osub.add_parser("list", help="list operations")
    lst.add_argument("--config", type=Path, required=True)
    add_format_options(lst)
    lst.set_defaults(func=cmd_operation_list)


def _config(path: Path) -> Any:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise ServeError(str(exc)) from None


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _config(args.file)
    hosts = len(config.hosts)
    fenced = sum(1 for h in config.hosts.values() if h.fencing)
    print(
        f"{args.file}: valid — cloud {config.cloud.name}, profile {config.profile}, "
        f"{len(config.segments)} segment(s), {hosts} host(s) configured, {fenced} with fencing"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from hastack.controller import build_controller  # noqa: PLC0415

    config = _config(args.config)
    try:
        controller = build_controller(config, clock=SystemClock())
    except HastackError as exc:
        raise ServeError(str(exc)) from None
    engine = controller.engine
    engine.listeners.append(_Printer())
    store = config.store
    where = f"etcd {', '.join(store.endpoints)}" if store.driver == "etcd" else store.path
    agents = controller.agents
    heard = f", agents on udp {agents.address[0]}:{agents.address[1]}" if agents else ""
    print(
        f"hastack controller {config.controller.name}: cloud {config.cloud.name}, "
        f"profile {config.profile}, store {where}{heard}",
        flush=True,
    )
    if args.once:
        engine.tick()
        controller.close()
        return 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        engine.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        engine.run_forever()
    finally:
        controller.close()
    return 0


class _Printer:
    """Each event of a tick as a line; and, for a follower, who leads, whenever that changes."""

    def __init__(self) -> None:
        self.standby = ""

    def __call__(self, report: Any) -> None:
        stamp = time.strftime("%H:%M:%S")
        verdict = str(report.verdict)
        if not report.leader:
            if verdict != self.standby:
                print(f"{stamp} {verdict}", flush=True)
            self.standby = verdict
            return
        if self.standby:
            print(f"{stamp} leading", flush=True)
            self.standby = ""
        for event in report.events:
            print(f"{stamp} {event.subject}: {event.message}", flush=True)


def _store(path: Path) -> Any:
    from hastack.controller import open_store  # noqa: PLC0415

    return open_store(_config(path), SystemClock())


def cmd_host(args: argparse.Namespace) -> int:
    from hastack.controller import request, withdraw  # noqa: PLC0415

    store = _store(args.config)
    body = {"operator": args.operator, "at": time.time(), "comment": args.comment}
    try:
        if args.action == "confirm-off":
            if sys.stdin.isatty():
                answer = input(
                    f"Confirm that {args.host} is powered off and cannot run its instances "
                    "(a wrong answer can run a VM twice) [yes/no]: "
                )
                if answer.strip().lower() != "yes":
                    print("not confirmed")
                    return 1
            request(store, "confirm", args.host, body)
        elif args.action == "maintenance-on":
            request(store, "maintenance", args.host, body)
        elif args.action == "maintenance-off":
            withdraw(store, "maintenance", args.host, operator=args.operator)
        elif args.action == "rejoin":
            request(store, "rejoin", args.host, body)
    finally:
        store.close()
    log.info("%s %s by %s", args.action, args.host, args.operator)
    print(f"{args.action} {args.host}: recorded for the leader (operator {args.operator})")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from hastack.controller import request, withdraw  # noqa: PLC0415

    store = _store(args.config)
    body = {"operator": args.operator, "at": time.time()}
    try:
        if args.action == "pause":
            request(store, "paused", body=body)
        elif args.action == "resume":
            withdraw(store, "paused", operator=args.operator)
        else:
            request(store, "cliff-ack", body=body)
    finally:
        store.close()
    print(f"{args.action}: recorded (operator {args.operator})")
    return 0


def cmd_operation_list(args: argparse.Namespace) -> int:
    from hastack.engine.engine import summarize  # noqa: PLC0415
    from hastack.engine.journal import Journal  # noqa: PLC0415

    store = _store(args.config)
    try:
        rows = summarize(op for op, _ in Journal(store).operations())
    finally:
        store.close()
    columns = ["id", "kind", "host", "state", "host_state", "actions", "done", "reason"]
    print(render_rows(rows, columns, args.format, args.column))
    return 0
