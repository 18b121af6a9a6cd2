"""The ablation report: per metric, each row's mean +- 95% interval over seeds, its paired
difference against coarse-to-fine (same pooling, same seeds), the ordering, and a verdict on each
of the paper's claims (docs/method.md; docs/ablations.md reads one). JSON for machines
(``ablation.json``), Markdown for people (``ablation.md``), one plot (``ablation.png``).

A claim "A beats B" *holds* when the 95% interval of the paired difference A - B lies above 0,
is *reversed* when it lies below 0, and is *within noise* otherwise.

    >>> g = Grid.parse(schedules="coarse-to-fine,random", poolings="mean", seeds=3)
    >>> s = {"base / mean": {"m": {None: 0.5}},
    ...      "coarse-to-fine / mean": {"m": {0: 0.60, 1: 0.62, 2: 0.61}},
    ...      "random / mean": {"m": {0: 0.55, 1: 0.58, 2: 0.56}}}
    >>> r = build_report(g, s)
    >>> [(c["claim"], c["verdict"]) for c in r.claims]
    [('coarse-to-fine beats random (mean pooling)', 'holds'), ('training lifts the base (mean pooling)', 'holds')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.ablation.grid import BASE, PAPER_POOLING, REFERENCE_SCHEDULE, Grid
from mghkit.ablation.stats import Summary, paired, summary
from mghkit.jsonl import write_json_atomic, write_text_atomic

Scores = dict[str, dict[str, dict[Any, float]]]  # row -> metric -> seed (None for the base) -> score
VERDICTS = {"higher": "holds", "lower": "reversed", "within noise": "within noise", "one seed": "one seed"}


@dataclass
class AblationReport:
    """What ``mghkit.ablate`` returns; ``table(metric)`` is what the CLI prints."""

    metrics: list[str]
    rows: list[dict[str, Any]]  # {"row", "schedule", "pooling", "metrics": {metric: summary + diff}}
    claims: list[dict[str, Any]]
    ordering: dict[str, list[str]]
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "rows": self.rows, "claims": self.claims, "ordering": self.ordering,
                "settings": self.settings, "timings": self.timings}  # fmt: skip

    def markdown(self) -> str:
        """Tables per metric, then the claims."""
        parts = []
        for metric in self.metrics:
            parts.append(
                f"### {metric}\n\n| row | mean +- 95% CI | seeds | vs coarse-to-fine (paired) |\n|---|---|---|---|"
            )
            for row in sorted(self.rows, key=lambda r: -r["metrics"].get(metric, {}).get("mean", float("-inf"))):
                m = row["metrics"].get(metric)
                if m is None:
                    continue
                diff = m.get("diff")
                parts.append(f"| {row['row']} | {_text(m)} | {m['n']} | "
                             f"{'(reference)' if diff is None and row['schedule'] == REFERENCE_SCHEDULE else _diff(diff)} |")  # fmt: skip
            parts.append("\nordering: " + " > ".join(self.ordering.get(metric, [])) + "\n")
        parts.append("### The paper's claims\n\n| claim | metric | difference (95% CI) | verdict |\n|---|---|---|---|")
        for c in self.claims:
            parts.append(f"| {c['claim']} | {c['metric']} | {_diff(c['diff'])} | {c['verdict']} |")
        return "\n".join(parts) + "\n"

    def save(self, out: str | Path) -> None:
        out = Path(out)
        write_json_atomic(out / "ablation.json", self.to_dict())
        write_text_atomic(out / "ablation.md", self.markdown())
        plot(self, out / "ablation.png")


def _text(m: dict[str, Any]) -> str:
    return f"{m['mean']:.4f}" + ("" if m.get("ci95") is None else f" +- {m['ci95']:.4f}")


def _diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    ci = "" if d.get("ci95") is None else f" [{d['low']:+.4f}, {d['high']:+.4f}]"
    return f"{d['mean']:+.4f}{ci}"


def _split(label: str) -> tuple[str, str]:
    schedule, _, pooling = label.partition(" / ")
    return schedule, pooling


def _values(scores: Scores, row: str, metric: str) -> dict[Any, float]:
    return scores.get(row, {}).get(metric, {})


def _paired(scores: Scores, a: str, b: str, metric: str) -> Summary | None:
    """a - b on the seeds both have (a base row, seedless, pairs with every seed)."""
    va, vb = _values(scores, a, metric), _values(scores, b, metric)
    if not va or not vb:
        return None
    if None in va or None in vb:
        seeds = [s for s in (vb if None in va else va) if s is not None] or [None]
    else:
        seeds = sorted(set(va) & set(vb))
    if not seeds:
        return None
    return paired([va.get(s, va.get(None)) for s in seeds], [vb.get(s, vb.get(None)) for s in seeds])  # type: ignore[misc]


def build_report(grid: Grid, scores: Scores, *, settings: dict[str, Any] | None = None,
                 timings: dict[str, float] | None = None) -> AblationReport:  # fmt: skip
    metrics = sorted({m for row in scores.values() for m in row})
    rows = []
    for label in grid.rows():
        if label not in scores:
            continue
        schedule, pooling = _split(label)
        reference = f"{REFERENCE_SCHEDULE} / {pooling}"
        entry: dict[str, Any] = {"row": label, "schedule": schedule, "pooling": pooling, "metrics": {}}
        for metric in metrics:
            values = _values(scores, label, metric)
            if not values:
                continue
            m = {**summary(list(values.values())).to_dict(), "scores": {str(k): v for k, v in values.items()}}
            diff = _paired(scores, label, reference, metric) if label != reference else None
            m["diff"] = None if diff is None else {**diff.to_dict(), "verdict": diff.verdict()}
            entry["metrics"][metric] = m
        rows.append(entry)
    ordering = {m: [r["row"] for r in sorted((r for r in rows if m in r["metrics"]),
                                               key=lambda r: -r["metrics"][m]["mean"])] for m in metrics}  # fmt: skip
    return AblationReport(metrics, rows, _claims(grid, scores, metrics), ordering, settings or {}, timings or {})


def _claims(grid: Grid, scores: Scores, metrics: list[str]) -> list[dict[str, Any]]:
    """The paper's claims this grid can test: coarse-to-fine beats each other schedule (per
    pooling), ATA beats each other pooling (under coarse-to-fine), training lifts the base."""
    pairs: list[tuple[str, str, str]] = []
    if REFERENCE_SCHEDULE in grid.schedules:
        for p in grid.poolings:
            for s in grid.schedules:
                if s != REFERENCE_SCHEDULE:
                    pairs.append(
                        (f"coarse-to-fine beats {s} ({p} pooling)", f"{REFERENCE_SCHEDULE} / {p}", f"{s} / {p}")
                    )
        if PAPER_POOLING in grid.poolings:
            for p in grid.poolings:
                if p != PAPER_POOLING:
                    pairs.append((f"ata beats {p} pooling (coarse-to-fine)", f"{REFERENCE_SCHEDULE} / {PAPER_POOLING}",
                                  f"{REFERENCE_SCHEDULE} / {p}"))  # fmt: skip
        if grid.base_rows:
            for p in grid.poolings:
                pairs.append((f"training lifts the base ({p} pooling)", f"{REFERENCE_SCHEDULE} / {p}", f"{BASE} / {p}"))
    claims = []
    for metric in metrics:
        for claim, a, b in pairs:
            d = _paired(scores, a, b, metric)
            if d is not None:
                claims.append({"claim": claim, "metric": metric, "a": a, "b": b, "diff": d.to_dict(),
                               "verdict": VERDICTS[d.verdict()]})  # fmt: skip
    return claims


def plot(report: AblationReport, path: Path) -> Path | None:
    """Rows x metric: each row's mean with its 95% interval, one panel per metric."""
    if not report.metrics or not report.rows:
        return None
    from matplotlib.figure import Figure  # no pyplot: the process's backend is left alone

    labels = [r["row"] for r in report.rows]
    fig = Figure(figsize=(5 * len(report.metrics) + 2, 0.35 * len(labels) + 1.5), dpi=100)
    for i, metric in enumerate(report.metrics):
        ax = fig.add_subplot(1, len(report.metrics), i + 1)
        ys, means, errs = [], [], []
        for y, r in enumerate(report.rows):
            m = r["metrics"].get(metric)
            if m is not None:
                ys.append(y)
                means.append(m["mean"])
                errs.append(m["ci95"] or 0.0)
        ax.errorbar(means, ys, xerr=errs, fmt="o", capsize=3)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if i == 0 else [""] * len(labels), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("ablation: mean and 95% interval over seeds")
    fig.tight_layout()
    fig.savefig(path)
    return path


def load_report(path: str | Path) -> dict[str, Any]:
    """The JSON of a saved report (``ablation.json``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
