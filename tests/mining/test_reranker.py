"""mine --reranker: a sentence-transformers CrossEncoder re-checks the high band against the margin.
The cross-encoder is a tiny random BERT built here (no download)."""

from __future__ import annotations

import pytest

from mghkit.errors import UsageError
from mghkit.mining import mine

WORDS = [f"t{i}" for i in range(200)]


def _docs(n: int = 120) -> list[str]:
    return [f"d{i} " + " ".join(f"t{(i * 37 + j * j * 13 + j * i) % 199}" for j in range(12)) for i in range(n)]


def tiny_cross_encoder(path):
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(f"d{i}" for i in range(200))]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1,
                        initializer_range=1.0)  # fmt: skip
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return CrossEncoder(str(path), device="cpu", local_files_only=True)


@pytest.mark.slow
def test_the_reranker_drops_high_band_candidates_it_scores_above_the_margin(tmp_path):
    ce = tiny_cross_encoder(tmp_path / "ce")
    docs = _docs()
    pairs = [{"id": f"p{i}", "query": " ".join(docs[i].split()[1:5]), "positive": docs[i]} for i in range(8)]
    plain = mine(pairs, corpus=docs, margin=0.9, bands="low=60-100")
    reranked = mine(pairs, corpus=docs, margin=0.9, bands="low=60-100", reranker=str(tmp_path / "ce"))
    assert [t.id for t in reranked] == [t.id for t in plain]
    dropped_total = 0
    for p, t in zip(pairs, reranked, strict=True):
        pos = float(ce.predict([(p["query"], p["positive"])])[0])
        high = float(ce.predict([(p["query"], t.hard_negative_examples[0].text)])[0])
        dropped = t.meta["mined"]["dropped"].get("reranker", 0)
        if dropped < 64:  # the reranker found candidates it accepts: the high negative is one of them
            assert high <= 0.9 * pos + 1e-6, (high, pos)
        dropped_total += dropped
    assert reranked.stats.dropped["reranker"] == dropped_total > 0


def test_a_reranker_that_cannot_be_loaded_is_a_usage_error(tmp_path):
    docs = _docs()
    with pytest.raises(UsageError, match=r"--reranker .* cannot be loaded offline"):
        mine([{"query": "t1 t2", "positive": docs[0]}], corpus=docs, reranker=str(tmp_path / "missing"))
