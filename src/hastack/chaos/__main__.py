"""``python -m hastack.chaos``: run a campaign, shrink a failing seed, replay a scenario file.

python -m hastack.chaos run --runs 10000 [--first 0] [--workers 2] [--report FILE]
python -m hastack.chaos show SEED            # the plan and timeline of one seed
python -m hastack.chaos shrink SEED --out tests/chaos/scenarios/NAME.yaml --why TEXT
python -m hastack.chaos replay FILE [--update]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hastack.chaos.campaign import (
    Report,
    campaign,
    read_scenario,
    scenario_file,
    shrink,
    write_scenario,
)
from hastack.chaos.history import generate
from hastack.chaos.run import play


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hastack.chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="a campaign of seeded runs")
    r.add_argument("--runs", type=int, default=1000)
    r.add_argument("--first", type=int, default=0, help="the first seed")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--report", type=Path, default=Path("chaos-report.json"))
    s = sub.add_parser("show", help="one seed's plan, timeline and verdict")
    s.add_argument("seed", type=int)
    k = sub.add_parser("shrink", help="shrink a failing seed into a regression scenario")
    k.add_argument("seed", type=int)
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--why", default="", help="what it found, for the file")
    p = sub.add_parser("replay", help="replay a scenario file against its golden timeline")
    p.add_argument("file", type=Path)
    p.add_argument("--update", action="store_true", help="write the new timeline as golden")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    if args.command == "run":
        return _run(args)
    if args.command == "show":
        outcome = play(generate(args.seed))
        for event in outcome.plan.events:
            print(f"fault   {event.describe()}")
        print("\n".join(outcome.history))
        print(outcome.violation or f"no violation ({outcome.stats})")
        return 0 if outcome.ok else 1
    if args.command == "shrink":
        small, outcome = shrink(generate(args.seed))
        name = args.out.stem
        write_scenario(args.out, scenario_file(name, small, outcome, args.why))
        print(f"{len(small.events)} of {len(generate(args.seed).events)} events left:")
        for event in small.events:
            print(f"  {event.describe()}")
        print(f"written: {args.out}")
        return 0
    doc, plan = read_scenario(args.file)
    outcome = play(plan)
    if args.update:
        write_scenario(args.file, scenario_file(doc["name"], plan, outcome, doc.get("why", "")))
        print(f"updated {args.file}: {len(outcome.history)} timeline lines")
        return 0
    same = outcome.history == doc["timeline"]
    print(outcome.violation or "no violation", "; timeline", "matches" if same else "DIFFERS")
    return 0 if outcome.ok and same else 1


def _run(args: argparse.Namespace) -> int:
    step = max(1, args.runs // 20)

    def progress(report: Report) -> None:
        if report.runs % step == 0:
            print(f"  {report.summary()}", flush=True)

    report = campaign(args.runs, args.first, args.workers, progress)
    doc = report.to_dict()
    args.report.write_text(json.dumps(doc, indent=2) + "\n")
    print("faults by kind: " + ", ".join(f"{k} {v}" for k, v in doc["faults_by_kind"].items()))
    for v in doc["violations"][:20]:
        print(f"  seed {v['seed']}: {v['violation']}")
    print(f"report: {args.report} ({doc['seconds']} s)")
    print(report.summary())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
