"""Retrievers: rank the corpus for a batch of queries, return the top ``k`` and the positive's place.

``bm25``: bm25s (Lucene BM25 over lower-cased alphanumeric words; every query scores the whole
corpus, so ranks are exact). ``dense``: cosine of L2-normalised embeddings (:mod:`.embedders`),
exact (a matrix product) up to ``exact_max`` documents, a faiss HNSW index beyond; corpus
embeddings and the index are cached (:mod:`.cache`). ``hybrid``: ``w * cosine + (1 - w) *
bm25 / max bm25`` of the query (its candidates are the union of both top-k lists when the dense
side is approximate).

    >>> r = Bm25(["ls list files", "cp copy files", "tar archive"])
    >>> [h.order.tolist() for h in r.search(["list files"], [None], [[0]], k=2)]
    [[0, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RETRIEVERS = ("bm25", "dense", "hybrid")
EXACT_MAX = 200_000  # documents searched exactly by the dense retriever (docs/mining.md: measured)
HYBRID_DENSE_WEIGHT = 0.5


@dataclass
class Hits:
    """One query's top of the ranking: corpus positions (most similar first), their scores and
    1-based ranks, and the positive's score and rank (None: beyond what an ANN search returned)."""

    order: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    pos_score: float
    pos_rank: int | None


def tokens(text: str) -> list[str]:
    """
    >>> tokens("ls(1) - list directory contents; a")
    ['ls', 'list', 'directory', 'contents']
    """
    return [w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if len(w) > 1]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first (ties: lower position first)."""
    k = min(k, scores.shape[0])
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    return part[np.lexsort((part, -scores[part]))]


def _exact_hits(scores: np.ndarray, positives: list[int], k: int) -> Hits:
    order = _top(scores, k)
    pos = max(positives, key=lambda i: scores[i])
    pos_score = float(scores[pos])
    return Hits(order, scores[order], np.arange(1, len(order) + 1), pos_score, int((scores > pos_score).sum()) + 1)


class Bm25:
    name = "bm25"

    def __init__(self, texts: list[str], *, workers: int = 1) -> None:
        import bm25s

        self.n = len(texts)
        self.workers = max(1, workers)
        self.index = bm25s.BM25()
        self.index.index([tokens(t) or [""] for t in texts], show_progress=False)

    def full_scores(self, query: str) -> np.ndarray:
        toks = [t for t in tokens(query) if t in self.index.vocab_dict]
        if not toks:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.index.get_scores(toks), dtype=np.float32)

    def search(self, queries: list[str], instructions: list[str | None], positives: list[list[int]],
               k: int) -> list[Hits]:  # fmt: skip
        def one(j: int) -> Hits:
            return _exact_hits(self.full_scores(queries[j]), positives[j], k)

        if self.workers == 1 or len(queries) == 1:
            return [one(j) for j in range(len(queries))]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, range(len(queries))))


class Dense:
    name = "dense"

    def __init__(self, embeddings: np.ndarray, encode_queries: Any, *, index: Any = None) -> None:
        self.emb = embeddings  # [n, d] L2-normalised (maybe a read-only memory map)
        self.encode_queries = encode_queries
        self.index = index  # a faiss index, or None: exact search

    @property
    def exact(self) -> bool:
        return self.index is None

    def query_vectors(self, queries: list[str], instructions: list[str | None]) -> np.ndarray:
        out = np.zeros((len(queries), self.emb.shape[1]), dtype=np.float32)
        groups: dict[str | None, list[int]] = {}
        for j, ins in enumerate(instructions):
            groups.setdefault(ins, []).append(j)
        for ins, idx in groups.items():
            out[idx] = self.encode_queries([queries[j] for j in idx], ins)
        return out

    def search(self, queries: list[str], instructions: list[str | None], positives: list[list[int]],
               k: int) -> list[Hits]:  # fmt: skip
        q = self.query_vectors(queries, instructions)
        if self.exact:
            return [_exact_hits(row, positives[j], k) for j, row in enumerate(q @ np.asarray(self.emb).T)]
        self.index.hnsw.efSearch = max(2 * k, 64)
        k = min(k, self.emb.shape[0])
        scores, order = self.index.search(q, k)
        hits = []
        for j in range(len(queries)):
            keep = order[j] >= 0
            o, s = order[j][keep], scores[j][keep]
            pos_scores = {p: float(self.emb[p] @ q[j]) for p in positives[j]}
            pos = max(pos_scores, key=pos_scores.__getitem__)
            where = np.flatnonzero(o == pos)
            rank = int(where[0]) + 1 if len(where) else None
            hits.append(Hits(o, s, np.arange(1, len(o) + 1), pos_scores[pos], rank))
        return hits

    def scores_of(self, q: np.ndarray, docs: np.ndarray) -> np.ndarray:
        return np.asarray(self.emb[np.sort(docs)] @ q)[np.argsort(np.argsort(docs))]


class Hybrid:
    name = "hybrid"

    def __init__(self, bm25: Bm25, dense: Dense, weight: float = HYBRID_DENSE_WEIGHT) -> None:
        self.bm25, self.dense, self.w = bm25, dense, weight

    def search(self, queries: list[str], instructions: list[str | None], positives: list[list[int]],
               k: int) -> list[Hits]:  # fmt: skip
        q = self.dense.query_vectors(queries, instructions)
        hits = []
        for j, query in enumerate(queries):
            lexical = self.bm25.full_scores(query)
            if self.dense.exact:
                cos = np.asarray(self.dense.emb) @ q[j]
                top = max(float(lexical.max()), 1e-9)
                hits.append(_exact_hits(self.w * cos + (1 - self.w) * lexical / top, positives[j], k))
                continue
            [ann] = Dense.search(self.dense, [query], [instructions[j]], [positives[j]], k)
            docs = np.unique(np.concatenate([ann.order, _top(lexical, k), np.asarray(positives[j])]))
            top = max(float(lexical[docs].max()), 1e-9)
            fused = self.w * self.dense.scores_of(q[j], docs) + (1 - self.w) * lexical[docs] / top
            local = _exact_hits(fused, [int(np.flatnonzero(docs == p)[0]) for p in positives[j]], k)
            hits.append(Hits(docs[local.order], local.scores, local.ranks, local.pos_score, local.pos_rank))
        return hits
