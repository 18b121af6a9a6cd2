"""The learning check: fine-tune on a BEIR set's training split, measure nDCG@10 on its held-out
queries (docs/training.md; the CI-sized version is tests/train/test_learns_on_real_data.py).

Queries are split by sha256(seed, query id) into train and held-out; training triplets pair each
training query with its relevant document and four BM25-mined negatives graded by rank
(``mghkit.mine``; ``--bands one-window --margin 0`` gives the one-window baseline of docs/mining.md). Documents relevant to held-out queries are kept out of training
entirely (neither positives nor negatives), so the held-out score is clean
(``mghkit.demo.manpages_split``).

    python -m bench.recipe_manpages --out runs/manpages --steps 60       # bundled man-pages set
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mghkit.demo import MANPAGES_INSTRUCTION as INSTRUCTION
from mghkit.demo import PublicSplit, eval_subset, manpages_split, mine_public_triplets
from mghkit.jsonl import write_json_atomic, write_jsonl
from mghkit.mining import ONE_WINDOW


def ndcg_at_10(encoder: Any, data: PublicSplit, qids: list[str], doc_ids: list[str], batch_size: int = 16) -> float:
    """Mean nDCG@10 (pytrec_eval) of ``encoder`` ranking ``doc_ids`` for ``qids``."""
    import pytrec_eval

    q = encoder.encode([data.queries[i] for i in qids], instruction=INSTRUCTION, batch_size=batch_size)
    d = encoder.encode([data.corpus[i] for i in doc_ids], batch_size=batch_size)
    scores = (q @ d.T).tolist()
    run = {}
    for qi, row in zip(qids, scores, strict=True):
        top = sorted(range(len(doc_ids)), key=lambda j: -row[j])[:100]
        run[qi] = {doc_ids[j]: float(row[j]) for j in top}
    qrels = {qi: data.qrels[qi] for qi in qids}
    res = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return sum(r["ndcg_cut_10"] for r in res.values()) / len(res)


def run_recipe(out: Path, *, beir: Path | None = None, steps: int = 60, batch_size: int = 8, max_length: int = 128,
               max_docs: int | None = 500, max_test_queries: int | None = None, lr: float = 2e-4,
               seed: int = 0, threads: int | None = None, gradient_checkpointing: bool = False,
               pooling: str | None = None, mine_options: dict[str, Any] | None = None,
               skip_before: bool = False, log: Any = print) -> dict[str, Any]:  # fmt: skip
    """Split, mine, evaluate the untrained model, train, evaluate the run dir. Returns the figures."""
    import torch

    import mghkit

    if threads:  # a script: the whole process (both evaluations too) uses these threads
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    data = manpages_split(seed, max_test=max_test_queries, beir=beir)
    triplets = mine_public_triplets(data, seed, **(mine_options or {}))
    triplet_file = out / "triplets.jsonl"
    write_jsonl(triplet_file, triplets)
    qids, doc_ids = eval_subset(data, max_docs, seed)
    log(f"{len(triplets)} training triplets; eval: {len(qids)} held-out queries x {len(doc_ids)} docs")

    before = float("nan")
    if not skip_before:
        t0 = time.perf_counter()
        base = mghkit.load_encoder("local", max_length=max_length, pooling=pooling)
        before = ndcg_at_10(base, data, qids, doc_ids)
        log(f"untrained nDCG@10 = {before:.4f} ({time.perf_counter() - t0:.0f} s)")
        del base

    result = mghkit.fine_tune(triplet_file, out=out / "run", base_model="local", schedule="coarse-to-fine",
                              steps=steps, batch_size=batch_size, max_length=max_length, lr=lr, seed=seed,
                              save_every=max(steps, 1), threads=threads,
                              gradient_checkpointing=gradient_checkpointing, pooling=pooling)  # fmt: skip
    trained = result.encoder()
    after = ndcg_at_10(trained, data, qids, doc_ids)
    log(f"trained nDCG@10 = {after:.4f} after {steps} steps ({result.seconds / steps:.1f} s/step)")
    figures = {"before_ndcg10": round(before, 4), "after_ndcg10": round(after, 4), "steps": steps,
               "batch_size": batch_size, "max_length": max_length, "lr": lr, "seed": seed,
               "train_triplets": len(triplets), "heldout_queries": len(qids), "eval_docs": len(doc_ids),
               "s_per_step": round(result.seconds / steps, 2), "first_loss": result.losses[0],
               "last_loss": result.losses[-1], "pooling": trained.config.pooling,
               "torch_threads": torch.get_num_threads()}  # fmt: skip
    write_json_atomic(out / "figures.json", figures)
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/manpages"))
    ap.add_argument("--beir", type=Path, default=None, help="a BEIR dir (default: the bundled man-pages set)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-docs", type=int, default=500, help="docs to rank (0: the full corpus)")
    ap.add_argument("--max-test-queries", type=int, default=None, help="held-out queries to score (default: all)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pooling", default=None, help="mean, last, weighted-mean or ata (default: the encoder's)")
    ap.add_argument("--retriever", default="bm25", help="mghkit mine --retriever (bm25, dense, hybrid)")
    ap.add_argument("--bands", default=None, help="mghkit mine --bands, or 'one-window' (FlagEmbedding's 10-210)")
    ap.add_argument("--margin", type=float, default=0.95, help="mghkit mine --margin (0: no margin filter)")
    ap.add_argument("--skip-before", action="store_true", help="do not score the untrained model")
    a = ap.parse_args(argv)
    from mghkit.cli.setup import setup_model

    setup_model()
    figures = run_recipe(a.out, beir=a.beir, steps=a.steps, batch_size=a.batch_size, max_length=a.max_length,
                         max_docs=a.max_docs or None, max_test_queries=a.max_test_queries, lr=a.lr, seed=a.seed, threads=a.threads, pooling=a.pooling,
                         mine_options={"retriever": a.retriever, "margin": a.margin or None,
                                       "bands": ONE_WINDOW if a.bands == "one-window" else a.bands},
                         skip_before=a.skip_before,
                         log=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
