"""The loss / learning-rate plot of a run (a PNG beside metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_metrics(metrics: Path, out: Path) -> Path | None:
    """Draw loss (left axis) and lr (right axis) against step from ``metrics.jsonl``."""
    rows = []
    for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines() if metrics.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line a killed run left half-written
            continue
    if not rows:
        return None
    from matplotlib.figure import Figure  # no pyplot: the process's matplotlib backend is left alone

    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(7, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(steps, [r["loss"] for r in rows], color="tab:blue", lw=1, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss", color="tab:blue")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in rows], color="tab:orange", lw=1, label="lr")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    stage_starts = [
        r["step"] for a, r in zip([None, *rows], rows, strict=False) if a is None or a["stage"] != r["stage"]
    ]
    for s in stage_starts[1:]:
        ax.axvline(s - 0.5, color="grey", lw=0.5, ls="--")
    ax.set_title("training loss and learning rate (dashed: stage boundaries)", fontsize=9)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    try:
        fig.savefig(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
