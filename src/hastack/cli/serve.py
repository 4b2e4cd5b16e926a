"""``hastack serve`` and ``hastack config check``; the operator's levers are commands over the
REST API the controller serves (hastack.cli.api_cmds)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from hastack.clock import SystemClock
from hastack.config import load_config
from hastack.errors import ConfigError, HastackError
from hastack.observability.logs import TickLogger

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
    if getattr(args, "log_format", "text") == "json":
        # one verdict line per tick in the log; the events are logged by the engine
        engine.listeners.append(TickLogger(config.controller.name, every_tick=True))
    else:
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
    if controller.api is not None:
        url = controller.api.url
        print(f"API {url}/v1 (OpenAPI {url}/openapi.json)  dashboard {url}/", flush=True)
    else:
        print("API off (api.listen: null)", flush=True)
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
