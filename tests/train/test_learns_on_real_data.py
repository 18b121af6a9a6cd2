"""It learns: the embedded SmolLM2, fine-tuned for a few steps on BM25-mined triplets from the
TRAINING split of the bundled man-pages set, scores better on HELD-OUT queries than untrained.

CI-sized (short texts, a few steps, a small held-out set); the full figures (nDCG@10 before and
after) are in docs/training.md, made by ``python -m mghkit.train.recipes``."""

from __future__ import annotations

import json

import pytest
import torch

from mghkit.paths import bundled_eval_dir
from mghkit.train.recipes import INSTRUCTION, mine_triplets, read_beir, split_queries

MAX_LENGTH = 48


def heldout_loss(encoder, data, qids, negatives) -> float:
    """InfoNCE (temperature 0.02) of held-out queries against their positives and BM25 negatives."""
    from mghkit.train.loss import info_nce

    q = encoder.encode([data.queries[i] for i in qids], instruction=INSTRUCTION, normalize=False)
    p = encoder.encode([data.corpus[next(iter(data.qrels[i]))] for i in qids], normalize=False)
    n = encoder.encode(negatives, normalize=False)
    return info_nce(q, p, n).item()


@pytest.mark.slow
def test_fine_tuning_beats_the_untrained_model_on_heldout_queries(tmp_path):
    from mghkit.model.encoder import load_encoder
    from mghkit.train.args import make_args
    from mghkit.train.loop import train

    torch.set_num_threads(1)  # a shared CPU: one thread is faster than two contended ones
    data = read_beir(bundled_eval_dir() / "manpages-retrieval")
    train_q, test_q = split_queries(sorted(data.queries), 0.2, seed=0)
    test_q = test_q[:24]
    held_docs = {d for q in test_q for d in data.qrels[q]}
    triplets = mine_triplets(data, train_q, held_docs)
    assert {t["meta"]["query_id"] for t in triplets}.isdisjoint(test_q)  # held-out queries are not trained on
    assert not held_docs & {n["doc_id"] for t in triplets for n in t["hard_negative_examples"]}  # nor their docs
    file = tmp_path / "triplets.jsonl"
    file.write_text("".join(json.dumps(t) + "\n" for t in triplets))
    test_negs = [t["hard_negative_examples"][0]["text"] for t in mine_triplets(data, test_q, set())]

    base = load_encoder("local", max_length=MAX_LENGTH)
    before = heldout_loss(base, data, test_q, test_negs)
    del base
    run = tmp_path / "run"
    train(make_args(str(file), dict(out=str(run), steps=8, batch_size=8, max_length=MAX_LENGTH, lr=5e-4,
                                    schedule="coarse-to-fine", gradient_checkpointing=False, threads=1)))  # fmt: skip
    after = heldout_loss(load_encoder(str(run)), data, test_q, test_negs)
    print(f"held-out InfoNCE: untrained {before:.3f} -> trained {after:.3f}")
    assert after < before - 0.1, (before, after)
