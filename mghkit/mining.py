"""Graded hard negatives mined from a corpus: (query, positive) pairs -> triplets in the paper's
four-level format (docs/method.md section 1), which validate, curriculum and train take as they are.

    >>> docs = [f"page {i}: " + " ".join(f"w{j}" for j in range(i % 7, 40, 3)) for i in range(200)]
    >>> pairs = [{"id": "p1", "query": "w2 w5 w8 w11", "positive": docs[2]}]
    >>> [t] = mine(pairs, corpus=docs)
    >>> [n.similarity_level for n in t.hard_negative_examples]
    ['high', 'medium', 'medium-low', 'low']
    >>> t.meta["mined"]["retriever"], len(t.meta["mined"]["ranks"])
    ('bm25', 4)

Grading (the man-pages recipe's, kept so that figures stay comparable): the retriever ranks the
whole corpus for the query; the candidates are that ranking minus the query's positives (every
pair with the same query); level L takes one candidate from its band ``BANDS[L]`` (0-based
positions among the candidates, most similar first), picked by sha256(seed, pair id, level).
Bands past the end of a small corpus shrink to its last candidates; a corpus too small for four
distinct negatives is a UsageError. ``meta.mined`` records the retriever and, for each negative
and for the positive, its 1-based rank in the full ranking and its score.

Retrievers: ``bm25`` (rank-bm25's Okapi BM25 over lower-cased alphanumeric words).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mghkit.errors import InputError, UsageError
from mghkit.hashing import seeded_int
from mghkit.jsonl import display_name, iter_lines, write_jsonl
from mghkit.schema import LEVELS, HardNegative, Triplet

__all__ = ["BANDS", "RETRIEVERS", "mine"]

# Rank bands (0-based, among the candidates) of each level, most similar first.
BANDS: dict[str, tuple[int, int]] = {"high": (0, 3), "medium": (5, 15), "medium-low": (30, 80), "low": (300, 1000)}
RETRIEVERS = ("bm25",)

Source = str | os.PathLike[str]


def mine(
    pairs: Iterable[Any] | Source,
    *,
    corpus: Iterable[Any] | Source | None = None,
    retriever: str = "bm25",
    bands: dict[str, tuple[int, int]] | None = None,
    seed: int = 0,
    instruction: str | None = None,
    kind: str | None = None,
    out: Source | None = None,
) -> list[Triplet]:
    """Triplets with four graded negatives for each (query, positive) pair.

    ``pairs``: records (dicts or objects) with ``query``, ``positive`` and optional
    ``instruction``, ``id``, ``kind``; or a JSONL path. ``corpus``: texts, records with
    ``text`` (and optional ``title``, ``_id``/``id``), a JSONL path or a BEIR dir (its
    ``corpus.jsonl``); None: the pairs' positives. ``instruction`` / ``kind`` fill pairs that
    have none. ``out``: also write the triplets there (atomically). See the module docstring.
    """
    if retriever not in RETRIEVERS:
        raise UsageError(f"unknown retriever {retriever!r} (choose from {', '.join(RETRIEVERS)})")
    bands = {**BANDS, **(bands or {})}
    for level, (lo, hi) in bands.items():
        if level not in LEVELS or not 0 <= lo < hi:
            raise UsageError(f"bad band {level}: {lo}-{hi} (levels {', '.join(LEVELS)}; 0 <= start < end)")
    items = list(_read_pairs(pairs))
    if not items:
        raise UsageError("no pairs to mine")
    docs = list(_read_corpus(corpus)) if corpus is not None else _positives_as_corpus(items)
    if not docs:
        raise UsageError("the corpus is empty")
    texts = [text for _, text in docs]
    where: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        where.setdefault(text, []).append(i)
    positives_of: dict[str, set[str]] = {}
    for item in items:
        positives_of.setdefault(item["query"], set()).add(item["positive"])
        if item["positive"] not in where:
            raise InputError("the positive is not in the corpus (give a corpus that holds it, or none)",
                             path=item["_source"], line=item["_line"], field="positive")  # fmt: skip

    scorer = _Bm25(texts)
    triplets = []
    for item in items:
        scores = scorer.scores(item["query"])
        order = np.argsort(-scores, kind="stable").tolist()  # ties keep corpus order
        rank = {doc: r for r, doc in enumerate(order, 1)}
        skip = positives_of[item["query"]]
        candidates = [i for i in order if texts[i] not in skip]
        key = item.get("id") or Triplet(query=item["query"], positive_example=item["positive"],
                                        hard_negative_examples=[]).id  # fmt: skip
        picks = [_pick(candidates, bands[level], seed, f"{key}:{level}") for level in LEVELS]
        if len(set(picks)) < len(LEVELS):
            raise UsageError(f"the corpus is too small for the bands: {len(candidates)} candidates for pair "
                             f"{key!r} give fewer than {len(LEVELS)} distinct negatives (pass smaller bands)")  # fmt: skip
        negatives = [HardNegative(similarity_level=level, text=texts[i], **_doc_id(docs[i][0]))
                     for level, i in zip(LEVELS, picks, strict=True)]  # fmt: skip
        best = min(rank[i] for i in where[item["positive"]])
        mined = {"retriever": retriever, "ranks": [rank[i] for i in picks],
                 "scores": [round(float(scores[i]), 4) for i in picks],
                 "positive": {"rank": best, "score": round(float(scores[order[best - 1]]), 4)}}  # fmt: skip
        triplets.append(Triplet(id=key, kind=item.get("kind") or kind, instruction=item.get("instruction") or
                                instruction or "", query=item["query"], positive_example=item["positive"],
                                hard_negative_examples=negatives, meta={"source": "mined", "mined": mined}))  # fmt: skip
    if out is not None:
        write_jsonl(os.fspath(out), triplets)
    return triplets


def _pick(candidates: list[int], band: tuple[int, int], seed: int, key: str) -> int:
    """One candidate from ``band`` (clipped to the candidates), chosen by (seed, key)."""
    if not candidates:
        raise UsageError("the corpus holds nothing but the positives: no negative to mine")
    hi = min(band[1], len(candidates))
    lo = min(band[0], hi - 1)
    return candidates[lo + seeded_int(seed, key) % (hi - lo)]


def _doc_id(doc_id: str | None) -> dict[str, str]:
    return {"doc_id": doc_id} if doc_id is not None else {}


class _Bm25:
    """Okapi BM25 (rank-bm25) over lower-cased alphanumeric words of two or more characters."""

    def __init__(self, texts: list[str]) -> None:
        from rank_bm25 import BM25Okapi

        self.index = BM25Okapi([tokens(t) for t in texts])

    def scores(self, query: str) -> Any:
        return self.index.get_scores(tokens(query))


def tokens(text: str) -> list[str]:
    """
    >>> tokens("ls(1) - list directory contents; a")
    ['ls', 'list', 'directory', 'contents']
    """
    return [w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if len(w) > 1]


# ----------------------------------------------------------------------------- input
def _records(source: Iterable[Any] | Source, what: str) -> Iterator[tuple[str, int, Any]]:
    """(source name, 1-based line or position, record) of a JSONL path or an in-memory iterable."""
    if isinstance(source, str | os.PathLike):
        name = display_name(os.fspath(source))
        for line in iter_lines(os.fspath(source)):
            if line.obj is None:
                raise InputError(line.error or "bad line", path=name, line=line.lineno)
            yield name, line.lineno, line.obj
        return
    if isinstance(source, dict):
        raise UsageError(f"{what}: expected a list of records or a path, got one dict")
    for i, rec in enumerate(source, 1):
        yield f"<{what}>", i, rec


def _field(rec: Any, name: str) -> Any:
    return rec.get(name) if isinstance(rec, dict) else getattr(rec, name, None)


def _read_pairs(pairs: Iterable[Any] | Source) -> Iterator[dict[str, Any]]:
    for source, line, rec in _records(pairs, "pairs"):
        item: dict[str, Any] = {"_source": source, "_line": line}
        for name in ("query", "positive"):
            value = _field(rec, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError("expected a non-empty string", path=source, line=line, field=name)
            item[name] = value
        for name in ("instruction", "id", "kind"):
            value = _field(rec, name)
            if value is not None and not isinstance(value, str):
                raise InputError("expected a string", path=source, line=line, field=name)
            item[name] = value
        yield item


def _read_corpus(corpus: Iterable[Any] | Source) -> Iterator[tuple[str | None, str]]:
    """(doc id or None, text) of each document; a record's text is ``title text``."""
    if isinstance(corpus, str | os.PathLike) and Path(corpus).is_dir():
        corpus = Path(corpus) / "corpus.jsonl"
    for source, line, rec in _records(corpus, "corpus"):
        if isinstance(rec, str):
            yield None, rec
            continue
        text, title = _field(rec, "text"), _field(rec, "title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise InputError("expected a string", path=source, line=line, field="text")
        doc_id = _field(rec, "_id") or _field(rec, "id")
        yield None if doc_id is None else str(doc_id), f"{title} {text}".strip()


def _positives_as_corpus(items: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item["positive"], None)
    return [(None, text) for text in seen]
