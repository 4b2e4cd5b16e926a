"""``hastack config show|set|unset``: the cluster-wide dynamic configuration (hastack.dynamic).

The overrides live in the controllers' store (the one ``--config`` names, as for the other
operator levers); whichever controller leads applies them from its next tick on.  ``set`` and
``unset`` validate the whole merged configuration first and write compare-and-set, so a bad
value or a concurrent writer is refused with nothing written.

Examples::

    hastack config set --config hastack.yaml recovery.max_parallel=5 profile=fast
    hastack config set --config hastack.yaml 'guards.budgets=[{kind: cloud, max_hosts: 3,
        max_percent: 10, window: 600}]'
    hastack config show --config hastack.yaml --effective -f json
    hastack config unset --config hastack.yaml recovery.max_parallel
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hastack import dynamic
from hastack.cli.output import add_format_options, render_rows
from hastack.cli.serve import ServeError, _config, _store
from hastack.errors import ConfigError, HastackError, RevisionConflict


def register(csub: Any) -> None:
    """Add show/set/unset to ``hastack config``'s subcommands (``csub``, made by cli/serve.py
    beside ``check``)."""
    show = csub.add_parser("show", help="show the dynamic overrides in the store")
    show.add_argument("--config", type=Path, required=True)
    show.add_argument(
        "--effective",
        action="store_true",
        help="every dynamic setting with the value in force (the file's, or its override)",
    )
    add_format_options(show)
    show.set_defaults(func=cmd_show)
    put = csub.add_parser("set", help="override dynamic settings cluster-wide: KEY=VALUE ...")
    put.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="VALUE is YAML")
    unset = csub.add_parser("unset", help="drop overrides: back to the file's values")
    unset.add_argument("keys", nargs="*", metavar="KEY")
    unset.add_argument("--all", action="store_true", help="drop every override")
    for p in (put, unset):
        p.add_argument("--config", type=Path, required=True)
        p.add_argument("--operator", default=getpass.getuser(), help="for the audit trail")
        p.add_argument(
            "--revision",
            type=int,
            help="write only if the overrides are still at this revision (from config show)",
        )
    put.set_defaults(func=cmd_set)
    unset.set_defaults(func=cmd_unset)


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["recovery.max_parallel=5"]`` -> ``{"recovery.max_parallel": 5}`` (values as YAML)."""
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ServeError(f"{item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ServeError(f"{key}: value is not valid YAML: {exc}") from None
    return out


def cmd_show(args: argparse.Namespace) -> int:
    config = _config(args.config)
    store = _store(args.config)
    try:
        overrides, revision = dynamic.read(store)
        if args.effective:
            merged = dynamic.merge(config, overrides)
            values, profile = dynamic.effective(merged), merged.detection_profile()
    except ConfigError as exc:
        raise ServeError(f"{exc}\n(repair: hastack config unset --all, then set again)") from None
    except HastackError as exc:
        raise ServeError(str(exc)) from None
    finally:
        store.close()
    if args.effective:
        rows = [
            {"key": k, "value": v, "source": "dynamic" if k in overrides else "file"}
            for k, v in values.items()
        ]
        for row in rows:  # an unset detection timing is the profile's
            section, _, leaf = row["key"].partition(".")
            if section == "detection" and row["value"] is None:
                row.update(value=getattr(profile, leaf), source=f"profile {profile.name}")
        columns = ["key", "value", "source"]
    else:
        rows = [{"key": k, "value": v} for k, v in sorted(overrides.items())]
        columns = ["key", "value"]
    if args.format in ("table", "value"):
        rows = [{**r, "value": _text(r["value"])} for r in rows]
    print(render_rows(rows, columns, args.format, args.column))
    if args.format == "table":
        print(f"revision {revision}" if revision else "no dynamic overrides stored")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    return _update(args, assign=parse_assignments(args.assignments))


def cmd_unset(args: argparse.Namespace) -> int:
    if not args.keys and not args.all:
        raise ServeError("name the KEY(s) to unset, or --all")
    return _update(args, unset=args.keys, reset=args.all)


def _audit(store: Any, operator: str, message: str) -> None:
    from hastack.engine.audit import AuditEntry, AuditTrail  # noqa: PLC0415

    entry = AuditEntry(time.time(), "cluster", message, f"operator {operator}", "request")
    try:
        AuditTrail(store).record([entry])
    except HastackError as exc:  # the change is written: say so, and that its audit is not
        print(f"warning: written, but not in the audit trail: {exc}", file=sys.stderr)


def _update(args: argparse.Namespace, **change: Any) -> int:
    config = _config(args.config)
    store = _store(args.config)
    try:
        done = dynamic.update(store, config, expect=args.revision, **change)
        if done.changes:
            _audit(
                store, args.operator, f"config revision {done.revision}: " + "; ".join(done.changes)
            )
    except RevisionConflict as exc:
        raise ServeError(
            f"not written: the dynamic configuration was changed by someone else "
            f"(revision {exc.actual}, expected {exc.expected}); "
            "see hastack config show, then retry"
        ) from None
    except HastackError as exc:
        raise ServeError(f"not written: {exc}") from None
    finally:
        store.close()
    if not done.changes:
        print(f"no change (revision {done.revision})")
        return 0
    print(f"dynamic configuration revision {done.revision} (the leader applies it next tick):")
    for line in done.changes:
        print(f"  {line}")
    return 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
