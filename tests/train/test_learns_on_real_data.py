"""It learns: the embedded SmolLM2, fine-tuned for a few steps on BM25-mined triplets from the
TRAINING split of the bundled man-pages set, scores better on HELD-OUT queries than untrained.

CI-sized (short texts, a few steps, a small held-out set); the full figures (nDCG@10 before and
after) are in docs/training.md, made by ``python -m bench.recipe_manpages``."""

from __future__ import annotations

import pytest
import torch

from mghkit.demo import MANPAGES_INSTRUCTION, manpages_split, mine_public_triplets
from mghkit.mining import mine

MAX_LENGTH = 48


def heldout_loss(encoder, split, negatives) -> float:
    """InfoNCE (temperature 0.02) of held-out queries against their positives and BM25 negatives."""
    from mghkit.train.loss import info_nce

    qids = split.test_qids
    q = encoder.encode([split.queries[i] for i in qids], instruction=MANPAGES_INSTRUCTION, normalize=False)
    p = encoder.encode([split.corpus[next(iter(split.qrels[i]))] for i in qids], normalize=False)
    n = encoder.encode(negatives, normalize=False)
    return info_nce(*(torch.as_tensor(x) for x in (q, p, n))).item()


@pytest.mark.slow
def test_fine_tuning_beats_the_untrained_model_on_heldout_queries(tmp_path):
    import mghkit

    torch.set_num_threads(1)  # a shared CPU: one thread is faster than two contended ones
    split = manpages_split(seed=0, max_test=24)
    triplets = mine_public_triplets(split)
    assert {t.meta["query_id"] for t in triplets}.isdisjoint(split.test_qids)  # held-out queries are not trained on
    assert not split.held_docs & {n.doc_id for t in triplets for n in t.hard_negative_examples}  # nor their docs
    test_pairs = [{"id": q, "query": split.queries[q], "positive": split.corpus[next(iter(split.qrels[q]))]}
                  for q in split.test_qids]  # fmt: skip
    test_negs = [t.hard_negative_examples[0].text for t in mine(test_pairs, corpus=list(split.corpus.values()))]

    base = mghkit.load_encoder("local", max_length=MAX_LENGTH)
    before = heldout_loss(base, split, test_negs)
    del base
    run = mghkit.fine_tune(triplets, out=tmp_path / "run", steps=8, batch_size=8, max_length=MAX_LENGTH, lr=5e-4,
                           schedule="coarse-to-fine", gradient_checkpointing=False, threads=1)  # fmt: skip
    after = heldout_loss(run.encoder(), split, test_negs)
    print(f"held-out InfoNCE: untrained {before:.3f} -> trained {after:.3f}")
    assert after < before - 0.1, (before, after)
