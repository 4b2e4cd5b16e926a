"""The ``hastack`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hastack import __version__
from hastack.cli import agent, api_cmds, events, network, serve, sim
from hastack.cli.client import ApiError
from hastack.demo import run as run_demo
from hastack.demo_ha import run as run_demo_ha
from hastack.observability.logs import setup_logging


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hastack", description="High availability for OpenStack.")
    parser.add_argument("--version", action="version", version=f"hastack {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line (and hastack serve logs one verdict line per tick)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sim.register(sub)
    serve.register(sub)
    network.register(sub)
    agent.register(sub)
    api_cmds.register(sub)
    events.register(sub)
    demo = sub.add_parser("demo", help="run the demo against a simulated cloud")
    demo.add_argument("--workdir", type=Path, help="where the demo writes its files")
    demo.add_argument(
        "--ha",
        action="store_true",
        help="hastack's own HA: three controllers on a 3-member etcd cluster, the leader "
        "killed in the middle of a recovery",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="stay up after it (the dashboard too), until Ctrl-C",
    )
    demo.set_defaults(
        func=lambda a: (
            run_demo_ha(a.workdir, keep_running=a.keep_running)
            if a.ha
            else run_demo(a.workdir, keep_running=a.keep_running)
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    try:
        result: int = args.func(args)
    except (sim.SimCliError, serve.ServeError, agent.AgentError, ApiError, CliError) as exc:
        print(f"hastack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
