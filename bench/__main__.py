"""``make bench``: every benchmark, a table on stdout and the same figures in a JSON file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from bench import sim_scale


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = sim_scale.run()
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("simulator scale (hastack sim serve, openstacksdk client)")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sim_scale": rows,
    }
    path = (args.out / "bench.json").resolve()
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {path}")
    return 0


raise SystemExit(main())
