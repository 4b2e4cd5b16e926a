"""``hastack agent``: run the node agent (or ``--check`` its configuration and exit)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from hastack.errors import ConfigError

log = logging.getLogger(__name__)


class AgentError(Exception):
    pass


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="run the node agent (heartbeats, checks, self-fencing)")
    agent.add_argument("--config", "-c", type=Path, required=True, help="hastack-agent.yaml")
    agent.add_argument("--check", action="store_true", help="validate the configuration, exit")
    agent.set_defaults(func=cmd_agent)


def cmd_agent(args: argparse.Namespace) -> int:
    from hastack.agent.config import load_agent_config  # noqa: PLC0415
    from hastack.agent.node import NodeAgent  # noqa: PLC0415
    from hastack.agent.protocol import load_key  # noqa: PLC0415

    try:
        config = load_agent_config(args.config)
        key = load_key(config.key_file)
    except (ConfigError, ValueError) as exc:
        raise AgentError(str(exc)) from None
    if args.check:
        sf = config.self_fence
        fencing = f"self-fencing after {sf.after:g}s via {sf.watchdog}" if sf.enabled else "off"
        print(
            f"{args.config}: valid; host {config.host}, {len(config.controllers)} controller(s), "
            f"{len(config.checks)} check(s), self-fencing {fencing}"
        )
        return 0
    try:
        agent = NodeAgent(config, key)
    except OSError as exc:
        raise AgentError(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent.start()
    log.info(
        "agent for %s: heartbeats every %gs to %s, listening on %s:%d",
        config.host,
        config.interval,
        ", ".join(config.controllers),
        *agent.address,
    )
    stop.wait()
    log.info("stopping (watchdog disarmed)")
    agent.stop()
    return 0
