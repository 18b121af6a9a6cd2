"""mghkit.mine with the dense and hybrid retrievers (the embedded all-MiniLM-L6-v2): exact search,
the faiss HNSW index, the on-disk embedding cache, and what cannot be loaded offline."""

from __future__ import annotations

import pytest

from mghkit.errors import UsageError
from mghkit.mining import mine
from mghkit.schema import LEVELS

TOPICS = ["cats", "ships", "volcanoes", "violins", "bread", "comets", "chess", "rivers", "bees", "trains"]


def _corpus() -> list[str]:
    return [f"Note {i} about {TOPICS[i % 10]}: fact number {i // 10} concerning {TOPICS[i % 10]} and "
            f"{TOPICS[(i * 3) % 10]}." for i in range(120)]  # fmt: skip


def _pairs(docs: list[str]) -> list[dict[str, str]]:
    return [{"id": f"p{i}", "query": f"something about {TOPICS[i % 10]}", "positive": docs[i]} for i in range(6)]


@pytest.mark.slow
def test_dense_exact_and_hnsw_agree_and_the_embeddings_are_cached(tmp_path):
    docs = _corpus()
    exact = mine(_pairs(docs), corpus=docs, retriever="dense", cache_dir=tmp_path, bands="low=60-100")
    assert exact.stats.search == "exact" and exact.stats.embeddings_cached is False
    assert list((tmp_path / "mining").glob("*.npy"))
    t = exact[0]
    assert [n.similarity_level for n in t.hard_negative_examples] == list(LEVELS)
    mined = t.meta["mined"]
    assert mined["retriever"] == "dense" and mined["scores"] == sorted(mined["scores"], reverse=True)
    assert min(mined["scores"]) >= -1 and max(mined["scores"]) <= 0.95 * mined["positive"]["score"] <= 1
    assert mined["dropped"]["margin"] > 0  # the other notes about cats outscore this note about cats
    ann = mine(_pairs(docs), corpus=docs, retriever="dense", cache_dir=tmp_path, bands="low=60-100", exact_max=10)
    assert ann.stats.search == "hnsw" and ann.stats.embeddings_cached is True  # the second run reads the cache
    assert list((tmp_path / "mining").glob("*.faiss"))
    assert [t.hard_negative_examples for t in ann] == [t.hard_negative_examples for t in exact]
    uncached = mine(_pairs(docs), corpus=docs, retriever="dense", cache=False, bands="low=60-100")
    assert uncached.stats.embeddings_cached is False
    assert [t.meta["mined"]["ranks"] for t in uncached] == [t.meta["mined"]["ranks"] for t in exact]


@pytest.mark.slow
def test_hybrid_mixes_both_scores(tmp_path):
    docs = _corpus()
    got = mine(_pairs(docs), corpus=docs, retriever="hybrid", cache_dir=tmp_path, bands="low=60-100")
    dense = mine(_pairs(docs), corpus=docs, retriever="dense", cache_dir=tmp_path, bands="low=60-100")
    assert got.stats.retriever == "hybrid" and got[0].meta["mined"]["retriever"] == "hybrid"
    assert [t.meta["mined"]["scores"] for t in got] != [t.meta["mined"]["scores"] for t in dense]
    ann = mine(_pairs(docs), corpus=docs, retriever="hybrid", cache_dir=tmp_path, bands="low=60-100", exact_max=10)
    assert [t.hard_negative_examples[0] for t in ann] == [t.hard_negative_examples[0] for t in got]


def test_an_embedder_that_cannot_be_loaded_offline_is_a_usage_error(tmp_path):
    docs = _corpus()
    with pytest.raises(UsageError, match="cannot be loaded offline"):
        mine(_pairs(docs), corpus=docs, retriever="dense", embedder="nobody/no-such-model", cache_dir=tmp_path)
    with pytest.raises(UsageError, match="not 'local', a model directory"):
        mine(_pairs(docs), corpus=docs, retriever="dense", embedder="no-such-thing", cache_dir=tmp_path)
