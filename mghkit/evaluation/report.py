"""Show and save a run's report: the comparison table (stderr) and the JSON file.

The first table has one row per model/pooling/baseline and one column per task (its main score),
the mean over tasks when there are several, and what encoding cost; the second has one row per
task and model with more metrics (nDCG/MRR/recall at 10 and recall at 100 for retrieval, Spearman
and Pearson for STS). The best score of each column (per task) is bold.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from mghkit.errors import UsageError

SHORT = {
    "ndcg_at_10": "nDCG@10",
    "cosine_spearman": "Spearman",
    "mrr_at_10": "MRR@10",
    "recall_at_10": "R@10",
    "recall_at_100": "R@100",
    "cosine_pearson": "Pearson",
    "map_at_10": "MAP@10",
}
DETAIL = {
    "retrieval": ("ndcg_at_10", "mrr_at_10", "recall_at_10", "recall_at_100"),
    "sts": ("cosine_spearman", "cosine_pearson"),
}


def first_scores(result: dict[str, Any]) -> dict[str, Any]:
    """The score dict of the first split and subset of one task result (local tasks have one)."""
    for split in result["scores"].values():
        if split:
            return dict(split[0])
    return {}


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _cell(value: float | None, best: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}"
    return f"[bold]{text}[/bold]" if best is not None and value == best and value > 0 else text


def render_table(report: dict[str, Any], console: Any) -> None:
    """Print the comparison tables with rich on ``console`` (stderr in the CLI)."""
    from rich.markup import escape
    from rich.table import Table

    tasks = report["tasks"]
    rows = report["rows"]
    if not rows:
        return
    main = Table(title="mghkit eval: main scores", title_justify="left")
    main.add_column("model [pooling]")
    for t in tasks:
        main.add_column(escape(f"{t['name']}\n{SHORT.get(t['main_score'], t['main_score'])}"), justify="right")
    if len(tasks) > 1:
        main.add_column("mean", justify="right")
    for head in ("encoded", "cached", "texts/s"):
        main.add_column(head, justify="right")
    values = [[r["results"].get(t["name"], {}).get("main_score") for t in tasks] for r in rows]
    means = [sum(v) / len(v) if all(x is not None for x in v) else None for v in values]
    bests = [_best([v[i] for v in values]) for i in range(len(tasks))]
    for r, v, m in zip(rows, values, means, strict=True):
        cells = [_cell(x, b) for x, b in zip(v, bests, strict=True)]
        if len(tasks) > 1:
            cells.append(_cell(m, _best(means)))
        enc = r.get("encoding") or {}
        rate = enc.get("texts_per_second")
        cells += [
            str(enc.get("texts_encoded", "-")),
            str(enc.get("texts_from_cache", "-")),
            f"{rate:.1f}" if rate else "-",
        ]
        main.add_row(escape(r["label"]), *cells)
    console.print(main)

    metrics = list(dict.fromkeys(m for t in tasks for m in DETAIL.get(t["type"].lower(), (t["main_score"],))))
    if len(metrics) <= 1:
        return  # nothing beyond the main table
    detail = Table(title="more metrics", title_justify="left")
    detail.add_column("task")
    detail.add_column("model [pooling]")
    for metric in metrics:
        detail.add_column(SHORT.get(metric, metric), justify="right")
    for t in tasks:
        grid = [(r["label"], [_metric(r, t["name"], m) for m in metrics]) for r in rows if t["name"] in r["results"]]
        col_best = [_best([g[i] for _, g in grid]) for i in range(len(metrics))]
        for n, (label, g) in enumerate(grid):
            detail.add_row(
                escape(t["name"]) if n == 0 else "",
                escape(label),
                *(_cell(x, b) for x, b in zip(g, col_best, strict=True)),
            )
        detail.add_section()
    console.print(detail)


def _metric(row: dict[str, Any], task: str, metric: str) -> float | None:
    result = row["results"].get(task)
    if not result:
        return None
    value = first_scores(result).get(metric)
    return float(value) if isinstance(value, int | float) else None


def check_out(out: str) -> None:
    """Fail before any work when ``out`` cannot be written (a dir, or a missing folder)."""
    if out == "-":
        return
    target = Path(out)
    if target.is_dir():
        raise UsageError(f"{target}: is a directory, expected an output file")
    if not target.parent.exists():
        raise UsageError(f"{target}: folder {target.parent} does not exist")


def write_json(report: dict[str, Any], out: str) -> None:
    """Write the report to ``out`` (``-``: stdout) atomically: a failed write leaves the old file."""
    text = json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    check_out(out)
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
