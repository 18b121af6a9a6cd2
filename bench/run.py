"""Run every benchmark and write docs/benchmarks.md.

Each ``bench/bench_*.py`` module exposes ``run() -> str``: a Markdown section (a ``## `` heading
and a table) with results as ratios measured side by side in one run, over several repeats.
``python -m bench.run --only validate`` runs the modules whose name contains "validate".
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--only", default="", help="run only modules whose name contains this")
    args = ap.parse_args()
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py") if args.only in p.stem)
    out = Path(args.out)
    sections: dict[str, str] = {}
    if out.exists():  # keep other sections when running one benchmark
        current = None
        for line in out.read_text().splitlines(keepends=True):
            if line.startswith("<!-- bench:"):
                current = line.split(":", 1)[1].strip(" ->\n")
                sections[current] = ""
            elif current:
                sections[current] += line
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        body = importlib.import_module(f"bench.{name}").run()
        sections[name] = body.rstrip() + f"\n\n_({time.perf_counter() - t0:.0f} s, {dt.date.today()})_\n\n"
    head = (
        "# Benchmarks\n\n"
        "Made by `make bench` (`python -m bench.run`). The machine is shared and noisy, so each "
        "figure that matters is a ratio measured side by side in one run, over several repeats.\n"
        f"Last machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.\n\n"
    )
    out.write_text(head + "".join(f"<!-- bench:{k} -->\n{v}" for k, v in sorted(sections.items())))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
