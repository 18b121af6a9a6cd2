"""False-negative filters: candidates that are probably positives too are dropped before grading.

A candidate is dropped when it is (in this order of reasons):
``other_positive`` - a positive of the same query (qrels, or another pair with the same query);
``duplicate`` - the positive's text after normalisation (NFKC, case, punctuation, spaces:
:func:`mghkit.validate.dedup.dedup_key`); ``near_duplicate`` - word and word-bigram Jaccard with
the positive >= ``NEAR_DUPLICATE`` (:func:`~mghkit.validate.dedup.near_identical`); ``margin`` -
its score is above ``margin`` x the positive's (positive-aware filtering, NV-Retriever's
TopK-PercPos; docs/mining.md); ``reranker`` - a cross-encoder scores it above ``margin`` x the
positive's (only the candidates of the first band are reranked).

    >>> f = Filter(["the ls command", "The  LS command!", "cp copies"], margin=0.95)
    >>> kept, dropped = f.apply(np.array([1, 2]), np.array([0.9, 0.5]), np.array([2, 3]), {0}, 0, 1.0)
    >>> kept, dict(dropped)
    ([(2, 0.5, 3)], {'duplicate': 1})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from mghkit.validate.dedup import WordSets, dedup_key, near_identical

REASONS = ("other_positive", "duplicate", "near_duplicate", "margin", "reranker")
NEAR_DUPLICATE = 0.8
DEFAULT_MARGIN = 0.95

Candidate = tuple[int, float, int]  # (corpus position, score, 1-based rank)


class Filter:
    def __init__(
        self, texts: list[str], *, margin: float | None = DEFAULT_MARGIN, near: float = NEAR_DUPLICATE
    ) -> None:
        self.texts = texts
        self.margin = margin
        self.near = near
        self._keys: dict[int, str] = {}
        self._words = WordSets()

    def key(self, i: int) -> str:
        k = self._keys.get(i)
        if k is None:
            k = self._keys[i] = dedup_key(self.texts[i])
        return k

    def apply(self, order: np.ndarray, scores: np.ndarray, ranks: np.ndarray, positives: set[int], own: int,
              pos_score: float, limit: int | None = None) -> tuple[list[Candidate], Counter[str]]:  # fmt: skip
        """The candidates kept (in ranking order, at most ``limit``) and the drops by reason.
        ``own``: the pair's positive (skipped, not counted); ``positives``: every positive of the query."""
        kept: list[Candidate] = []
        dropped: Counter[str] = Counter()
        pos_key = self.key(own)
        cap = None if self.margin is None or pos_score <= 0 else self.margin * pos_score
        for i, s, r in zip(order.tolist(), scores.tolist(), ranks.tolist(), strict=True):
            if i == own:
                continue
            key = self.key(i)
            if key == pos_key:
                dropped["duplicate"] += 1
            elif i in positives:
                dropped["other_positive"] += 1
            elif near_identical(key, pos_key, self.near, self._words):
                dropped["near_duplicate"] += 1
            elif cap is not None and s > cap:
                dropped["margin"] += 1
            else:
                kept.append((i, s, r))
                if limit is not None and len(kept) >= limit:
                    break
        return kept, dropped


def rerank_filter(candidates: list[Candidate], head: int, score: Callable[[list[str]], list[float]],
                  texts: list[str], positive: str, margin: float, max_checked: int = 64) -> tuple[list[Candidate], int]:  # fmt: skip
    """Walk the candidates in ranking order, ``head`` at a time, until ``head`` of them pass the
    cross-encoder ``score`` (texts -> scores for the query; the positive scored first): a candidate
    scored above ``margin`` x the positive's score is dropped. At most ``max_checked`` are scored;
    the rest follow unchecked. Returns (kept, dropped)."""
    pos = score([positive])[0]
    cap = margin * pos if pos > 0 else pos
    accepted: list[Candidate] = []
    dropped = checked = 0
    while len(accepted) < head and checked < min(max_checked, len(candidates)):
        chunk = candidates[checked : checked + head]
        for c, v in zip(chunk, score([texts[i] for i, _, _ in chunk]), strict=True):
            if v <= cap:
                accepted.append(c)
            else:
                dropped += 1
        checked += len(chunk)
    return accepted + candidates[checked:], dropped
