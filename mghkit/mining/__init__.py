"""Graded hard negatives mined from a corpus: (query, positive) pairs -> triplets in the paper's
four-level format (docs/method.md section 1), which validate, curriculum and train take as they are.
docs/mining.md explains the retrievers, the grading and the false-negative filters.

    >>> docs = [f"page {i}: " + " ".join(f"w{j}" for j in range(i % 7, 40, 3)) for i in range(200)]
    >>> pairs = [{"id": "p1", "query": "w2 w5 w8 w11", "positive": docs[2]}]
    >>> [t] = mine(pairs, corpus=docs)
    >>> [n.similarity_level for n in t.hard_negative_examples]
    ['high', 'medium', 'medium-low', 'low']
    >>> t.meta["mined"]["retriever"], len(t.meta["mined"]["ranks"])
    ('bm25', 4)

Modules, in data-flow order: inputs (pairs, corpus), embedders + cache (dense vectors),
retrievers (bm25, dense, hybrid), filters (false negatives), grading (bands), run (``mine``).
"""

from mghkit.mining.grading import DEFAULT_BANDS, ONE_WINDOW, Band, parse_bands
from mghkit.mining.retrievers import RETRIEVERS, tokens
from mghkit.mining.run import MineResult, MineStats, mine

BANDS = {level: (b.lo, b.hi) for level, b in DEFAULT_BANDS.items()}  # the rank bands, as plain tuples

__all__ = [
    "BANDS",
    "DEFAULT_BANDS",
    "ONE_WINDOW",
    "RETRIEVERS",
    "Band",
    "MineResult",
    "MineStats",
    "mine",
    "parse_bands",
    "tokens",
]
