"""Recipe: fine-tune on a BEIR set's training split, measure nDCG@10 on its held-out queries.

The "it must learn" demo (docs/training.md). Queries are split by sha256(seed, query id) into
train and held-out; training triplets pair each training query with its relevant document and
four BM25-mined negatives graded by rank (most similar first: high = a top BM25 hit that is not
relevant ... low = a far-down hit). Documents relevant to held-out queries are kept out of
training entirely (neither positives nor negatives), so the held-out score is clean.

    python -m mghkit.train.recipes --out runs/manpages --steps 60       # bundled man-pages set
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mghkit.paths import bundled_eval_dir
from mghkit.schema import LEVELS

INSTRUCTION = "Given the one-line summary of a Linux manual page, retrieve the page's description"
# Rank bands (0-based, among non-relevant BM25 hits) for each level, most similar first.
BANDS: dict[str, tuple[int, int]] = {"high": (0, 3), "medium": (5, 15), "medium-low": (30, 80), "low": (300, 1000)}


@dataclass
class Beir:
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def read_beir(path: str | Path) -> Beir:
    """A BEIR dir (read and checked by mghkit.evaluation.data) with each document as one text."""
    from mghkit.evaluation.data import read_beir as read_checked

    data = read_checked(path)
    corpus = {d: f"{title} {text}".strip() for d, (title, text) in data.corpus.items()}
    return Beir(corpus, data.queries, data.qrels)


def _key(seed: int, item: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{item}".encode()).digest()[:8], "big")


def split_queries(qids: list[str], heldout: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held-out) by sha256 of (seed, query id): stable under reordering and additions.

    >>> train, test = split_queries([f"q{i}" for i in range(1000)], 0.2)
    >>> len(test) in range(150, 250), set(train).isdisjoint(test)
    (True, True)
    """
    cut = int(heldout * 2**64)
    test = [q for q in qids if _key(seed, q) < cut]
    train = [q for q in qids if _key(seed, q) >= cut]
    return train, test


def _tok(text: str) -> list[str]:
    return [w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if len(w) > 1]


def mine_triplets(data: Beir, train_qids: list[str], exclude_docs: set[str], seed: int = 0) -> list[dict[str, Any]]:
    """Triplet records (the paper's format) with BM25-graded negatives for ``train_qids``."""
    from rank_bm25 import BM25Okapi

    doc_ids = [d for d in data.corpus if d not in exclude_docs]
    bm25 = BM25Okapi([_tok(data.corpus[d]) for d in doc_ids])
    out = []
    for qid in train_qids:
        relevant = data.qrels.get(qid, {})
        positives = [d for d in relevant if d in data.corpus and d not in exclude_docs]
        if not positives:
            continue
        scores = bm25.get_scores(_tok(data.queries[qid]))
        ranked = [
            doc_ids[i] for i in sorted(range(len(doc_ids)), key=lambda i: -scores[i]) if doc_ids[i] not in relevant
        ]
        negs = []
        for level in LEVELS:
            lo, hi = BANDS[level]
            hi = min(hi, len(ranked))
            lo = min(lo, hi - 1)
            pick = ranked[lo + _key(seed, f"{qid}:{level}") % (hi - lo)]
            negs.append({"similarity_level": level, "text": data.corpus[pick], "doc_id": pick})
        out.append({"id": f"manpages-{qid}", "kind": "short-long", "instruction": INSTRUCTION,
                    "query": data.queries[qid], "positive_example": data.corpus[positives[0]],
                    "hard_negative_examples": negs, "meta": {"source": "bm25-mined", "query_id": qid}})  # fmt: skip
    return out


def eval_subset(data: Beir, test_qids: list[str], max_docs: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    """Held-out queries and the corpus to rank: every relevant doc of those queries plus a
    deterministic sample of the others, up to ``max_docs`` (None: the full corpus)."""
    qids = [q for q in test_qids if q in data.qrels]
    if max_docs is None:
        return qids, list(data.corpus)
    must = sorted({d for q in qids for d in data.qrels[q] if d in data.corpus})
    others = sorted((d for d in data.corpus if d not in set(must)), key=lambda d: _key(seed, d))
    return qids, must + others[: max(0, max_docs - len(must))]


def ndcg_at_10(encoder: Any, data: Beir, qids: list[str], doc_ids: list[str], batch_size: int = 16) -> float:
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
               pooling: str | None = None, log: Any = print) -> dict[str, Any]:  # fmt: skip
    """Split, mine, evaluate the untrained model, train, evaluate the run dir. Returns the figures."""
    import torch

    from mghkit.model.encoder import load_encoder
    from mghkit.train.args import make_args
    from mghkit.train.loop import train

    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    data = read_beir(beir or bundled_eval_dir() / "manpages-retrieval")
    train_q, test_q = split_queries(sorted(data.queries), 0.2, seed)
    test_q = test_q[:max_test_queries] if max_test_queries else test_q
    held_docs = {d for q in test_q for d in data.qrels.get(q, {})}
    triplets = mine_triplets(data, train_q, held_docs, seed)
    triplet_file = out / "triplets.jsonl"
    triplet_file.write_text("".join(json.dumps(t) + "\n" for t in triplets))
    qids, doc_ids = eval_subset(data, test_q, max_docs, seed)
    log(f"{len(triplets)} training triplets; eval: {len(qids)} held-out queries x {len(doc_ids)} docs")

    t0 = time.perf_counter()
    base = load_encoder("local", max_length=max_length, pooling=pooling)
    before = ndcg_at_10(base, data, qids, doc_ids)
    eval_s = time.perf_counter() - t0
    log(f"untrained nDCG@10 = {before:.4f} ({eval_s:.0f} s)")
    del base

    run_dir = out / "run"
    args = make_args(str(triplet_file), dict(out=str(run_dir), base_model="local", schedule="coarse-to-fine",
                                             steps=steps, batch_size=batch_size, max_length=max_length, lr=lr,
                                             seed=seed, save_every=max(steps, 1), threads=threads,
                                             gradient_checkpointing=gradient_checkpointing, pooling=pooling))  # fmt: skip
    result = train(args)
    trained = load_encoder(str(run_dir))
    after = ndcg_at_10(trained, data, qids, doc_ids)
    log(f"trained nDCG@10 = {after:.4f} after {steps} steps ({result.seconds / steps:.1f} s/step)")
    figures = {"before_ndcg10": round(before, 4), "after_ndcg10": round(after, 4), "steps": steps,
               "batch_size": batch_size, "max_length": max_length, "lr": lr, "seed": seed,
               "train_triplets": len(triplets), "heldout_queries": len(qids), "eval_docs": len(doc_ids),
               "s_per_step": round(result.seconds / steps, 2), "first_loss": result.losses[0],
               "last_loss": result.losses[-1], "pooling": trained.config.pooling,
               "torch_threads": torch.get_num_threads()}  # fmt: skip
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/manpages"))
    ap.add_argument("--beir", type=Path, default=None, help="a BEIR dir (default: the bundled man-pages set)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-docs", type=int, default=500, help="docs to rank (0: the full corpus)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pooling", default=None, help="mean, last, weighted-mean or ata (default: the encoder's)")
    a = ap.parse_args(argv)
    figures = run_recipe(a.out, beir=a.beir, steps=a.steps, batch_size=a.batch_size, max_length=a.max_length,
                         max_docs=a.max_docs or None, lr=a.lr, seed=a.seed, threads=a.threads, pooling=a.pooling,
                         log=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
