"""`make demo`: the whole pipeline, offline, on the embedded defaults, in one folder.

    python -m mghkit.demo --out demo

brainstorm -> generate -> validate -> mine -> curriculum -> train -> pool-inspect -> eval, each step a
real `mghkit` command (its log in OUT/logs/). The synthetic triplets of the embedded 135M LLM are
weak, so - as in the paper's "MGH + public data" setting - training also uses triplets built
from the training split of the bundled man-pages set (graded negatives mined with BM25 by
``mghkit mine``, docs/mining.md), and eval scores the untrained and the trained model on the held-out
man-pages queries and SimLex-999. The demo ends with one summary table (also in OUT/summary.json).

The man-pages split (:func:`manpages_split`) is shared with the learning check
(bench/recipe_manpages.py) and its CI-sized test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mghkit.hashing import seeded_int
from mghkit.jsonl import JsonlWriter, write_json_atomic, write_text_atomic
from mghkit.paths import bundled_eval_dir

MANPAGES_INSTRUCTION = "Given the one-line summary of a Linux manual page, retrieve the page's description"


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


def split_queries(qids: list[str], heldout: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held-out) by sha256 of (seed, query id): stable under reordering and additions.

    >>> train, test = split_queries([f"q{i}" for i in range(1000)], 0.2)
    >>> len(test) in range(150, 250), set(train).isdisjoint(test)
    (True, True)
    """
    cut = int(heldout * 2**64)
    test = [q for q in qids if seeded_int(seed, q) < cut]
    train = [q for q in qids if seeded_int(seed, q) >= cut]
    return train, test


@dataclass
class PublicSplit:
    """A BEIR set split by query: training pairs and a corpus without the held-out queries' documents."""

    corpus: dict[str, str]  # doc id -> "title text"
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    train_pairs: list[dict[str, str]]  # {id, query, positive, instruction}: input of mghkit.mine
    train_corpus: list[dict[str, str]]  # {_id, text}: every document not relevant to a held-out query
    test_qids: list[str]
    held_docs: set[str]


def manpages_split(seed: int = 0, *, heldout: float = 0.2, max_test: int | None = None,
                   beir: str | Path | None = None) -> PublicSplit:  # fmt: skip
    """Split the bundled man-pages set (or ``beir``) into training pairs and held-out queries.
    Documents relevant to held-out queries are kept out of training entirely (neither positives
    nor negatives), so the held-out score is clean."""
    from mghkit.evaluation.data import read_beir

    data = read_beir(beir or bundled_eval_dir() / "manpages-retrieval")
    corpus = {d: f"{title} {text}".strip() for d, (title, text) in data.corpus.items()}
    train_q, test_q = split_queries(sorted(data.queries), heldout, seed)
    test_q = test_q[:max_test] if max_test else test_q
    held = {d for q in test_q for d in data.qrels.get(q, {})}
    pairs = []
    for q in train_q:
        positives = [d for d in data.qrels.get(q, {}) if d in corpus and d not in held]
        if positives:
            pairs.append({"id": q, "query": data.queries[q], "positive": corpus[positives[0]],
                          "instruction": MANPAGES_INSTRUCTION})  # fmt: skip
    docs = [{"_id": d, "text": text} for d, text in corpus.items() if d not in held]
    return PublicSplit(corpus, data.queries, data.qrels, pairs, docs, test_q, held)


def mine_public_triplets(split: PublicSplit, seed: int = 0, **options: Any) -> list[Any]:
    """Graded triplets of the training pairs (ids ``manpages-<query id>``), by ``mghkit.mine``
    (``options``: its keyword arguments, e.g. ``retriever``, ``bands``, ``margin``)."""
    from mghkit.mining import mine

    triplets = mine(split.train_pairs, corpus=split.train_corpus, seed=seed, kind="short-long", **options)
    for t in triplets:
        t.meta["query_id"] = t.id
        t.id = f"manpages-{t.id}"
    return triplets


def eval_subset(split: PublicSplit, max_docs: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    """Held-out queries and the corpus to rank: every relevant doc of those queries plus a
    deterministic sample of the others, up to ``max_docs`` (None: the full corpus)."""
    qids = [q for q in split.test_qids if q in split.qrels]
    if max_docs is None:
        return qids, list(split.corpus)
    must = sorted({d for q in qids for d in split.qrels[q] if d in split.corpus})
    others = sorted((d for d in split.corpus if d not in set(must)), key=lambda d: seeded_int(seed, d))
    return qids, must + others[: max(0, max_docs - len(must))]


def prepare_public_data(out: Path, *, heldout_queries: int, eval_docs: int, seed: int) -> tuple[Path, Path, Path, str]:
    """The man-pages training pairs and corpus (the input of ``mghkit mine``) and a held-out BEIR
    dir; returns (pairs, corpus, beir dir, instruction)."""
    split = manpages_split(seed, max_test=heldout_queries)
    pairs, corpus = out / "public-pairs.jsonl", out / "public-corpus.jsonl"
    _write_jsonl(pairs, [{**p, "id": f"manpages-{p['id']}"} for p in split.train_pairs])
    _write_jsonl(corpus, split.train_corpus)
    qids, doc_ids = eval_subset(split, eval_docs, seed)
    beir = out / "manpages-heldout"
    (beir / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(beir / "corpus.jsonl", [{"_id": d, "title": "", "text": split.corpus[d]} for d in doc_ids])
    _write_jsonl(beir / "queries.jsonl", [{"_id": q, "text": split.queries[q]} for q in qids])
    rows = [f"{q}\t{d}\t{s}" for q in qids for d, s in split.qrels[q].items()]
    write_text_atomic(beir / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return pairs, corpus, beir, MANPAGES_INSTRUCTION


def _count(path: Path) -> int:
    return sum(1 for line in path.open("rb") if line.strip()) if path.exists() else 0


def _reject_reasons(*paths: Path, top: int = 3) -> str:
    """The most common reject reasons across reject files (mghkit.schema.Reject records, as
    generate and validate write them), e.g. 'duplicate_query 3, query 2'."""
    from collections import Counter

    from mghkit.jsonl import read_jsonl
    from mghkit.schema import Reject

    counts: Counter[str] = Counter()
    for path in paths:
        for reject in read_jsonl(path, Reject) if path.exists() else []:
            counts.update(reject.codes())
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
    pairs, corpus, beir, instruction = prepare_public_data(out, heldout_queries=a.heldout_queries,
                                                           eval_docs=a.eval_docs, seed=a.seed)  # fmt: skip
    public = out / "public-triplets.jsonl"
    _run("mine", ["mine", str(pairs), "--corpus", str(corpus), "--retriever", "bm25", "--kind", "short-long",
                  "--seed", seed, "--no-resume", "--out", str(public)], out, timings)  # fmt: skip
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
    write_text_atomic(sts, "\n".join(lines[: a.sts_pairs]) + "\n")
    _run("eval", ["eval", "--model", "local", "--model", str(out / "run"), "--beir", str(beir), "--sts", str(sts),
                  "--instruction", instruction, "--max-length", str(a.max_length),
                  "--out", str(out / "eval.json")], out, timings)  # fmt: skip
    summary = summarize(out, timings)
    write_json_atomic(out / "summary.json", summary)
    print_summary(summary)
    print(f"artefacts in {out}/ (logs in {out}/logs/)", file=sys.stderr)


if __name__ == "__main__":
    main()
