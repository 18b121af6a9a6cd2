"""`make demo`: the whole pipeline, offline, on the embedded defaults, in one folder.

    python -m mghkit.demo --out demo

brainstorm -> generate -> validate -> curriculum -> train -> pool-inspect -> eval, each step a
real `mghkit` command (its log in OUT/logs/). The synthetic triplets of the embedded 135M LLM are
weak, so - as in the paper's "MGH + public data" setting - training also uses triplets built
from the training split of the bundled man-pages set (BM25-mined, graded negatives), and eval
scores the untrained and the trained model on the held-out man-pages queries and SimLex-999.
The demo ends with one summary table (also in OUT/summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mghkit.jsonl import JsonlWriter
from mghkit.paths import bundled_eval_dir


def _run(name: str, args: list[str], out: Path, timings: dict[str, float]) -> None:
    """Run one `mghkit` command; its stderr goes to the terminal and to OUT/logs/NAME.log."""
    print(f"\n== {name}: mghkit {' '.join(args)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    log = out / "logs" / f"{name}.log"
    with log.open("wb") as fp:
        proc = subprocess.Popen([sys.executable, "-m", "mghkit", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)  # fmt: skip
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            fp.write(chunk)
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        code = proc.wait()
    timings[name] = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"mghkit demo: step {name} failed with exit code {code} (log: {log})")


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with JsonlWriter(path) as writer:
        writer.write_all(records)


def prepare_public_data(out: Path, *, heldout_queries: int, eval_docs: int, seed: int) -> tuple[Path, Path, str]:
    """Man-pages training-split triplets and a held-out BEIR dir; returns (triplets, beir dir, instruction)."""
    from mghkit.train.recipes import INSTRUCTION, eval_subset, mine_triplets, read_beir, split_queries

    data = read_beir(bundled_eval_dir() / "manpages-retrieval")
    train_q, test_q = split_queries(sorted(data.queries), 0.2, seed)
    test_q = test_q[:heldout_queries]
    held_docs = {d for q in test_q for d in data.qrels.get(q, {})}
    triplets = mine_triplets(data, train_q, held_docs, seed)
    public = out / "public-triplets.jsonl"
    _write_jsonl(public, triplets)
    qids, doc_ids = eval_subset(data, test_q, eval_docs, seed)
    beir = out / "manpages-heldout"
    (beir / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(beir / "corpus.jsonl", [{"_id": d, "title": "", "text": data.corpus[d]} for d in doc_ids])
    _write_jsonl(beir / "queries.jsonl", [{"_id": q, "text": data.queries[q]} for q in qids])
    rows = [f"{q}\t{d}\t{s}" for q in qids for d, s in data.qrels[q].items()]
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return public, beir, INSTRUCTION


def _count(path: Path) -> int:
    return sum(1 for line in path.open("rb") if line.strip()) if path.exists() else 0


def _reject_reasons(*paths: Path, top: int = 3) -> str:
    """The most common reject reasons across reject files, e.g. 'duplicate_query 3, query 2'."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for path in paths:
        for line in path.open(encoding="utf-8") if path.exists() else []:
            rec = json.loads(line)
            reasons = rec.get("reasons") or [rec.get("reason")]
            for r in reasons:
                counts[r.get("code", "?") if isinstance(r, dict) else str(r).split(":")[0]] += 1
    return ", ".join(f"{k} {v}" for k, v in counts.most_common(top)) or "-"


def _mean_loss_per_stage(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Mean training loss per curriculum stage, e.g. {"1 low": 1.31, ...} (each stage's negatives
    are harder than the last, so the loss is compared within a stage, not across)."""
    by_stage: dict[str, list[float]] = {}
    for m in metrics:
        by_stage.setdefault(f"{m['stage']} {m['level']}", []).append(m["loss"])
    return {k: round(sum(v) / len(v), 3) for k, v in by_stage.items()}


def summarize(out: Path, timings: dict[str, float]) -> dict[str, Any]:
    """Collect the figures of a finished demo folder into one dict (OUT/summary.json)."""
    triplets = [json.loads(line) for line in (out / "triplets.jsonl").open(encoding="utf-8")]
    cost = sum(float(t.get("meta", {}).get("cost_usd") or 0.0) for t in triplets)
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").open()]
    report = json.loads((out / "eval.json").read_text())
    scores: dict[str, dict[str, float | None]] = {}
    for row in report["rows"]:  # the untrained base ("local") is "before", the run dir "after"
        key = "before" if row["model"] == "local" else "after"
        scores[key] = {t["name"]: row["results"].get(t["name"], {}).get("main_score") for t in report["tasks"]}
    return {
        "tasks": _count(out / "tasks.jsonl"),
        "triplets_generated": len(triplets),
        "generate_rejects": _count(out / "generate-rejects.jsonl"),
        "triplets_kept": _count(out / "clean.jsonl"),
        "validate_rejects": _count(out / "validate-rejects.jsonl"),
        "main_reject_reasons": _reject_reasons(out / "generate-rejects.jsonl", out / "validate-rejects.jsonl"),
        "public_triplets": _count(out / "public-triplets.jsonl"),
        "cost_usd": round(cost, 4),
        "training_steps": len(metrics),
        "training_seconds": round(metrics[-1]["elapsed_s"], 1) if metrics else 0.0,
        "loss_per_stage": _mean_loss_per_stage(metrics),
        "eval": scores,
        "eval_tasks": {t["name"]: t["main_score"] for t in report["tasks"]},
        "step_seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mghkit demo", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("result")
    table.add_row("tasks brainstormed", str(summary["tasks"]))
    table.add_row(
        "triplets generated", f"{summary['triplets_generated']} (+{summary['generate_rejects']} rejected by generate)"
    )
    table.add_row("triplets kept by validate", f"{summary['triplets_kept']} ({summary['validate_rejects']} rejected)")
    table.add_row("main reject reasons", summary["main_reject_reasons"])
    table.add_row("public triplets (man-pages train split)", str(summary["public_triplets"]))
    table.add_row("LLM cost", f"${summary['cost_usd']:.4f} (local model: free)")
    losses = ", ".join(f"{k} {v:.2f}" for k, v in summary["loss_per_stage"].items())
    table.add_row("training", f"{summary['training_steps']} steps in {summary['training_seconds']:.0f} s; "
                              f"mean loss per stage: {losses}")  # fmt: skip
    for task, metric in summary["eval_tasks"].items():
        before = summary["eval"].get("before", {}).get(task)
        after = summary["eval"].get("after", {}).get(task)
        cells = [f"{x:.4f}" if isinstance(x, int | float) else "-" for x in (before, after)]
        table.add_row(f"eval {task} ({metric})", f"before {cells[0]} -> after {cells[1]}")
    table.add_row("wall time", ", ".join(f"{k} {v:.0f}s" for k, v in summary["step_seconds"].items()))
    Console(stderr=True, width=max(100, Console(stderr=True).width)).print(table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo"), help="the demo folder (default: demo)")
    ap.add_argument("--tasks", type=int, default=6, help="tasks to brainstorm")
    ap.add_argument("--per-task", type=int, default=1, help="triplets per task")
    ap.add_argument("--steps", type=int, default=24, help="training steps")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=64, help="training and eval max tokens")
    ap.add_argument("--heldout-queries", type=int, default=100, help="held-out man-pages queries to score")
    ap.add_argument("--eval-docs", type=int, default=200, help="man-pages documents to rank")
    ap.add_argument("--sts-pairs", type=int, default=300, help="SimLex-999 pairs to score")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)

    out: Path = a.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MGHKIT_CACHE_DIR", str(Path.home() / ".cache" / "mghkit"))
    timings: dict[str, float] = {}
    seed = str(a.seed)
    _run("brainstorm", ["brainstorm", "--model", "local", "--n-tasks", str(a.tasks), "--seed", seed,
                        "--out", str(out / "tasks.jsonl")], out, timings)  # fmt: skip
    _run("generate", ["generate", str(out / "tasks.jsonl"), "--model", "local", "--per-task", str(a.per_task),
                      "--seed", seed, "--out", str(out / "triplets.jsonl"),
                      "--rejects", str(out / "generate-rejects.jsonl")], out, timings)  # fmt: skip
    _run("validate", ["validate", str(out / "triplets.jsonl"), "--check-levels", "--embedder", "local",
                      "--out", str(out / "clean.jsonl"), "--rejects", str(out / "validate-rejects.jsonl"),
                      "--report", str(out / "validate-report.json"), "--plot", str(out / "levels.png")],
         out, timings)  # fmt: skip
    public, beir, instruction = prepare_public_data(out, heldout_queries=a.heldout_queries, eval_docs=a.eval_docs,
                                                    seed=a.seed)  # fmt: skip
    combined = out / "all-triplets.jsonl"
    combined.write_bytes((out / "clean.jsonl").read_bytes() + public.read_bytes())
    _run("curriculum", ["curriculum", str(combined), "--schedule", "coarse-to-fine", "--seed", seed,
                        "--out", str(out / "train.jsonl")], out, timings)  # fmt: skip
    _run("train", ["train", str(out / "train.jsonl"), "--base-model", "local", "--steps", str(a.steps),
                   "--batch-size", str(a.batch_size), "--max-length", str(a.max_length), "--seed", seed,
                   "--out", str(out / "run")], out, timings)  # fmt: skip
    _run("pool-inspect", ["pool-inspect", "What is the Latin name of sodium?", "--model", str(out / "run"),
                          "--html", str(out / "pool-inspect.html")], out, timings)  # fmt: skip
    sts = out / "simlex-subset.jsonl"
    lines = (bundled_eval_dir() / "simlex999-sts" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    sts.write_text("\n".join(lines[: a.sts_pairs]) + "\n", encoding="utf-8")
    _run("eval", ["eval", "--model", "local", "--model", str(out / "run"), "--beir", str(beir), "--sts", str(sts),
                  "--instruction", instruction, "--max-length", str(a.max_length),
                  "--out", str(out / "eval.json")], out, timings)  # fmt: skip
    summary = summarize(out, timings)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    print(f"artefacts in {out}/ (logs in {out}/logs/)", file=sys.stderr)


if __name__ == "__main__":
    main()
