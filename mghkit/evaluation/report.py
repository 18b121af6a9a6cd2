"""The result of a run (``EvalReport``), its comparison tables and its JSON file.

The first table has one row per model/pooling/baseline and one column per task (its main score),
the mean over tasks when there are several, and what encoding cost; the second has one row per
task and model with more metrics (nDCG/MRR/recall at 10 and recall at 100 for retrieval, Spearman
and Pearson for STS). The best score of each column (per task) is bold. ``tables`` only builds
rich renderables; the caller prints them.

    >>> r = EvalReport(tasks=[{"name": "t", "type": "sts", "main_score": "cosine_spearman"}],
    ...                rows=[{"label": "m", "results": {"t": {"main_score": 0.5}}}])
    >>> r.scores()
    {'m': {'t': 0.5}}
    >>> r.to_dict()["rows"][0]["label"]
    'm'
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import RuntimeFailure, UsageError
from mghkit.files import is_special
from mghkit.jsonl import write_json_atomic


@dataclass
class EvalReport:
    """What ``mghkit.evaluate`` returns: the tasks, one row per model/pooling/baseline, the settings
    and library versions; ``rows[i]["results"][task]["main_score"]`` is a table cell."""

    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def scores(self) -> dict[str, dict[str, float]]:
        """Main scores: {row label: {task name: score}}."""
        return {r["label"]: {t: v["main_score"] for t, v in r["results"].items()} for r in self.rows}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the JSON report to ``path`` atomically (``-``: stdout; a device or FIFO: straight
        through); a failed write keeps the old file and raises an OSError naming ``path``."""
        check_out(path)
        try:
            write_json_atomic(path, self.to_dict())
        except OSError as e:
            if not e.filename:  # a buffered write to a full disk names no file
                e.filename = str(path)
            raise


class ReportNotWritten(RuntimeFailure):
    """Every row was evaluated, but the report could not be written to ``out`` (a full disk, a
    folder made read-only meanwhile): ``.report`` holds it, the vectors are in the cache."""

    def __init__(self, out: str | Path, error: OSError, report: EvalReport) -> None:
        super().__init__(f"{out}: cannot write the report: {error.strerror or error}")
        self.out, self.error, self.report = out, error, report


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


def tables(report: EvalReport) -> list[Any]:
    """The comparison tables as rich renderables (none when there is no row)."""
    from rich.markup import escape
    from rich.table import Table

    tasks, rows = report.tasks, report.rows
    if not rows:
        return []
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
    metrics = list(dict.fromkeys(m for t in tasks for m in DETAIL.get(t["type"].lower(), (t["main_score"],))))
    if len(metrics) <= 1:
        return [main]  # nothing beyond the main table
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
    return [main, detail]


def _metric(row: dict[str, Any], task: str, metric: str) -> float | None:
    result = row["results"].get(task)
    if not result:
        return None
    value = first_scores(result).get(metric)
    return float(value) if isinstance(value, int | float) else None


def check_out(out: str | Path) -> None:
    """Fail before any work when ``out`` cannot be written: a dir or a missing folder (exit 2), a
    folder this process may not write (an OSError naming ``out``: exit 1)."""
    if is_special(out):
        return
    target = Path(out)
    if target.is_dir():
        raise UsageError(f"{target}: is a directory, expected an output file")
    if not target.parent.exists():
        raise UsageError(f"{target}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):  # the atomic write renames in the folder
        raise OSError(errno.EACCES, f"{os.strerror(errno.EACCES)} (folder {target.parent} is not writable)", str(out))
