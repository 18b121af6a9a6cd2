"""The lexical baseline: BM25 (Okapi, rank-bm25) as an mteb search model, for retrieval tasks.

It plugs into mteb's retrieval evaluator through the ``index``/``search`` protocol, so its row is
scored by the same code as the embedders'. A document is its title and text; tokens are
lower-cased runs of letters and digits:

    >>> tokenize("printf(3): Formatted OUTPUT, conversion")
    ['printf', '3', 'formatted', 'output', 'conversion']
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25Search:
    """mteb SearchProtocol over rank-bm25's BM25Okapi (k1 1.5, b 0.75)."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        from mghkit.evaluation.encoder_adapter import model_meta

        self.k1, self.b = k1, b
        self.mteb_model_meta = model_meta("mghkit/bm25", _bm25_revision(), sparse=True)
        self._bm25: Any = None
        self._ids: list[str] = []

    def index(
        self,
        corpus: Any,
        *,
        task_metadata: Any = None,
        hf_split: str = "",
        hf_subset: str = "",
        encode_kwargs: Any = None,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> None:
        from rank_bm25 import BM25Okapi

        self._ids = [row["id"] for row in corpus]
        docs = [tokenize(f"{row.get('title') or ''} {row['text']}") for row in corpus]
        self._bm25 = BM25Okapi([d or [""] for d in docs], k1=self.k1, b=self.b)

    def search(
        self,
        queries: Any,
        *,
        task_metadata: Any = None,
        hf_split: str = "",
        hf_subset: str = "",
        top_k: int = 1000,
        encode_kwargs: Any = None,
        top_ranked: Any = None,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        from mteb._create_dataloaders import _combine_queries_with_instruction_text

        if self._bm25 is None:
            raise RuntimeError("BM25Search.search called before index")
        queries = _combine_queries_with_instruction_text(queries) if "instruction" in queries.column_names else queries
        results: dict[str, dict[str, float]] = {}
        k = min(top_k, len(self._ids))
        for qid, text in zip(queries["id"], queries["text"], strict=True):
            scores = np.asarray(self._bm25.get_scores(tokenize(text)), dtype=np.float64)
            allowed = set(top_ranked[qid]) if top_ranked and qid in top_ranked else None
            order = np.argsort(-scores, kind="stable")
            picked: dict[str, float] = {}
            for i in order:
                if allowed is not None and self._ids[i] not in allowed:
                    continue
                picked[self._ids[i]] = float(scores[i])
                if len(picked) >= k:
                    break
            results[qid] = picked
        return results


def _bm25_revision() -> str:
    """The mteb revision of the BM25 row: the rank-bm25 version and the parameters."""
    from importlib import metadata

    try:
        return f"rank-bm25-{metadata.version('rank-bm25')}"
    except metadata.PackageNotFoundError:
        return "rank-bm25"
