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


def read_sections(out: Path) -> dict[str, str]:
    """The sections of an existing benchmarks file, by module name."""
    sections: dict[str, str] = {}
    current = None
    for line in out.read_text().splitlines(keepends=True) if out.exists() else []:
        if line.startswith("<!-- bench:"):
            current = line.split(":", 1)[1].strip(" ->\n")
            sections[current] = ""
        elif current:
            sections[current] += line
    return sections


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--only", default="", help="run only modules whose name contains this")
    args = ap.parse_args()
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py") if args.only in p.stem)
    out = Path(args.out)
    fresh: dict[str, str] = {}
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        body = importlib.import_module(f"bench.{name}").run()
        fresh[name] = body.rstrip() + f"\n\n_({time.perf_counter() - t0:.0f} s, {dt.date.today()})_\n\n"
    # Re-read just before writing, so sections written meanwhile by another run are kept.
    sections = {**read_sections(out), **fresh}
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
