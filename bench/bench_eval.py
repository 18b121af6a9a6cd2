"""`eval` on a subset of the bundled suite: wall time per model, encoding throughput, ATA vs mean.

Each repeat runs every row once, side by side (interleaved), through the library entry point
``mghkit.evaluate`` (mteb scoring included, model loading included, no disk cache so every text is
encoded). Rows: all-MiniLM-L6-v2, the embedded decoder (``local``) with mean pooling, the same with
ATA pooling (each on its own, so the ATA/mean ratio is the real cost of ATA in a whole eval), the
three poolings in one run (mean, last, ata sharing one forward pass), and BM25.

The figure that matters is the ATA/mean wall-time ratio within each repeat (target <= 1.10); the
median over repeats is reported. ``MGHKIT_BENCH_REPEATS`` (default 4) and
``MGHKIT_BENCH_EVAL_SIZE`` ("queries,docs,pairs", default "20,40,40") change the size; max length
128, batch 8, one torch thread (steadier on a shared 2-core machine).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from mghkit.cli.setup import setup_eval
from mghkit.evaluation.run import EvalReport, evaluate

ROWS: dict[str, dict[str, Any]] = {
    "minilm": {"models": ["minilm"]},
    "local [mean]": {"models": ["local"], "poolings": ["mean"]},
    "local [ata]": {"models": ["local"], "poolings": ["ata"]},
    "local [mean,last,ata] one run": {"models": ["local"], "poolings": ["mean", "last", "ata"]},
    "bm25": {"models": [], "baselines": ["bm25"]},
}


def _evaluate(size: tuple[int, int, int], **row: Any) -> EvalReport:
    q, d, p = size
    return evaluate(max_queries=q, max_docs=d, max_pairs=p, max_length=128, batch_size=8, cache=False, **row)


def run() -> str:
    setup_eval(threads=1)  # as `mghkit eval --threads 1`: one torch thread (steadier on a shared machine), quiet
    repeats = int(os.environ.get("MGHKIT_BENCH_REPEATS", "4"))
    q, d, p = (int(x) for x in os.environ.get("MGHKIT_BENCH_EVAL_SIZE", "20,40,40").split(","))
    size = (q, d, p)
    wall: dict[str, list[float]] = {name: [] for name in ROWS}
    enc_s: dict[str, list[float]] = {name: [] for name in ROWS}
    texts: dict[str, int] = {}
    scores: dict[str, dict[str, float]] = {}
    for row in ROWS.values():  # warm-up, not timed: first imports, first model loads, file caches
        _evaluate((2, 4, 4), **row)
    for _ in range(repeats):
        for name, row in ROWS.items():
            t0 = time.perf_counter()
            report = _evaluate(size, **row)
            wall[name].append(time.perf_counter() - t0)
            encodings = [r.get("encoding") or {} for r in report.rows]
            enc_s[name].append(sum(e.get("encode_seconds", 0.0) for e in encodings))
            texts[name] = sum(e.get("texts_encoded", 0) for e in encodings)
            scores.update(report.scores())
    ratio = [a / m for a, m in zip(wall["local [ata]"], wall["local [mean]"], strict=True)]
    enc_ratio = [a / m for a, m in zip(enc_s["local [ata]"], enc_s["local [mean]"], strict=True)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## eval: bundled-suite subset per model, encoding throughput, ATA vs mean (bench_eval)",
        "",
        f"Subset of the bundled suite: man-pages retrieval {q} queries / {d} documents, SimLex-999 {p} pairs "
        f"(seed 0), max length 128, batch 8, 1 torch thread, no disk cache; one untimed warm-up of every row, "
        f"then {repeats} interleaved repeats, medians. Wall = the whole `evaluate` (model load, encoding, mteb scoring). Load average at the end: "
        f"{load:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| row | wall s (median) | wall s per repeat | encode s (median) | texts encoded | texts/s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name in ROWS:
        med_enc = statistics.median(enc_s[name])
        rate = f"{texts[name] / med_enc:.2f}" if med_enc > 0 else "-"
        per = ", ".join(f"{w:.1f}" for w in wall[name])
        lines.append(
            f"| {name} | {statistics.median(wall[name]):.1f} | {per} | {med_enc:.1f} | {texts[name]} | {rate} |"
        )
    lines += [
        "",
        f"ATA / mean wall-time ratio of the whole eval, per repeat: {', '.join(f'{r:.3f}' for r in ratio)}; "
        f"median **{statistics.median(ratio):.3f}** (target <= 1.10). Encoding time only: median "
        f"{statistics.median(enc_ratio):.3f}.",
        "",
        "| row | " + " | ".join(sorted({t for s in scores.values() for t in s})) + " |",
    ]
    tasks = sorted({t for s in scores.values() for t in s})
    lines.append("|---|" + "---:|" * len(tasks))
    for label, s in scores.items():
        lines.append(f"| {label} | " + " | ".join(f"{s[t]:.4f}" if t in s else "-" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
