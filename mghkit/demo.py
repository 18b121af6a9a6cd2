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
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            fp.write(chunk)
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        code = proc.wait()
    timings[name] = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"mghkit demo: step {name} failed with exit code {code} (log: {log})")


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


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
