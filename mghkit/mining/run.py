"""`mghkit.mine`: (query, positive) pairs + a corpus -> triplets with four graded negatives.

Data flow: read the pairs (:mod:`.inputs`; a first pass collects ids and each query's positives),
build the retriever (:mod:`.retrievers`, embeddings from :mod:`.cache`), then for each batch of
pairs: retrieve, drop false negatives (:mod:`.filters`), pick the four levels (:mod:`.grading`),
write. With ``resume=True`` the output is appended line by line and pairs whose id is already in
it are skipped, so a killed run (even kill -9) continues where it stopped, without duplicates.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import InputError, UsageError
from mghkit.hashing import stable_id
from mghkit.jsonl import JsonlWriter, check_distinct_outputs
from mghkit.mining.filters import DEFAULT_MARGIN, REASONS, Filter, rerank_filter
from mghkit.mining.grading import Band, depth, parse_bands, pick
from mghkit.mining.inputs import Corpus, Pair, Source, beir_split, is_beir_dir, parse_pair, read_corpus, records
from mghkit.mining.retrievers import EXACT_MAX, RETRIEVERS, Bm25, Dense, Hits, Hybrid
from mghkit.schema import LEVELS, HardNegative, Triplet

__all__ = ["MineResult", "MineStats", "mine"]

log = logging.getLogger(__name__)


@dataclass
class MineStats:
    retriever: str = "bm25"
    search: str = "exact"  # exact | hnsw (faiss)
    embeddings_cached: bool | None = None  # dense: read from the cache (True) or computed
    corpus: int = 0
    pairs: int = 0
    resumed: int = 0
    mined: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0  # bands whose score range held no candidate (their rank range was used)
    seconds: float = 0.0
    bands: dict[str, str] = field(default_factory=dict)


class MineResult(list[Triplet]):
    """The mined triplets (empty when ``collect=False``) and ``.stats``."""

    stats: MineStats


def _default_id(query: str, positive: str) -> str:
    return stable_id(query, positive, prefix="trip-")


# ----------------------------------------------------------------------------- the pairs
class PairSource:
    """Pairs from records, a JSONL path or a BEIR dir; iterable any number of times."""

    def __init__(self, pairs: Iterable[Any] | Source, corpus: Iterable[Any] | Source | None) -> None:
        self.beir = None
        if is_beir_dir(pairs):
            from mghkit.evaluation.data import read_beir

            self.beir = read_beir(pairs, split=beir_split(pairs))  # type: ignore[arg-type]
            if corpus is None:
                corpus = [{"_id": d, "title": t, "text": x} for d, (t, x) in self.beir.corpus.items()]
        elif not isinstance(pairs, str | os.PathLike):
            pairs = list(pairs) if not isinstance(pairs, dict) else pairs
        self.pairs = pairs
        self.corpus = Corpus.build(read_corpus(corpus) if corpus is not None else self._positives())
        if not len(self.corpus):
            raise UsageError("the corpus is empty")

    def _positives(self) -> Iterator[tuple[str | None, str]]:
        seen: set[str] = set()
        for p in self:
            if p.positive not in seen:
                seen.add(p.positive)
                yield p.positive_doc, p.positive

    def __iter__(self) -> Iterator[Pair]:
        if self.beir is None:
            for source, line, rec in records(self.pairs, "pairs"):  # type: ignore[arg-type]
                yield parse_pair(source, line, rec, _default_id)
            return
        b = self.beir
        for qid in b.queries:
            rel = [d for d, g in b.qrels.get(qid, {}).items() if g > 0 and d in b.corpus]
            for d in rel:
                title, text = b.corpus[d]
                yield Pair(id=qid if len(rel) == 1 else f"{qid}:{d}", query=b.queries[qid],
                           positive=f"{title} {text}".strip(), positive_doc=d, source=b.source or "qrels")  # fmt: skip

    def positions(self, p: Pair) -> list[int]:
        """Corpus positions of the pair's positive (by doc id for BEIR pairs, else by text)."""
        if p.positive_doc is not None and p.positive_doc in self.corpus.by_id:
            return [self.corpus.by_id[p.positive_doc]]
        return self.corpus.find(p.positive)

    def scan(self) -> tuple[int, dict[str, set[int]]]:
        """Check every pair (positive in the corpus) before mining; (pairs, query -> positives)."""
        n, of_query = 0, {}
        for p in self:
            where = self.positions(p)
            if not where:
                raise InputError("the positive is not in the corpus (give a corpus that holds it, or none)",
                                 path=p.source, line=p.line or None, field="positive")  # fmt: skip
            of_query.setdefault(p.query, set()).update(where)
            n += 1
        if not n:
            raise UsageError("no pairs to mine")
        return n, of_query


# ----------------------------------------------------------------------------- the retriever
def build_retriever(kind: str, corpus: Corpus, *, embedder: str, workers: int, exact_max: int,
                    cache: bool, cache_dir: str | Path | None, max_length: int | None,
                    stats: MineStats) -> Any:  # fmt: skip
    if kind == "bm25":
        return Bm25(corpus.texts, workers=workers)
    dense = _dense(corpus, embedder, exact_max, cache, cache_dir, max_length, stats)
    return dense if kind == "dense" else Hybrid(Bm25(corpus.texts, workers=workers), dense)


def _dense(corpus: Corpus, spec: str, exact_max: int, cache: bool, cache_dir: str | Path | None,
           max_length: int | None, stats: MineStats) -> Dense:  # fmt: skip
    from mghkit.mining.cache import cache_key, cached_embeddings, cached_faiss_index
    from mghkit.mining.embedders import load_dense_embedder

    emb = load_dense_embedder(spec, max_length=max_length)
    key = cache_key(emb.fingerprint, corpus.digest(), max_length)
    vectors, stats.embeddings_cached = cached_embeddings(key, len(corpus), lambda: emb.encode_docs(corpus.texts),
                                                         root=cache_dir, use=cache)  # fmt: skip
    if len(corpus) <= exact_max:
        return Dense(vectors, emb.encode_queries)
    import faiss
    import numpy as np

    def build() -> Any:
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(np.ascontiguousarray(vectors))
        return index

    stats.search = "hnsw"
    index, _ = cached_faiss_index(key + "-hnsw32", build, root=cache_dir, use=cache)
    return Dense(vectors, emb.encode_queries, index=index)


def _cross_encoder(spec: str) -> Callable[[str, list[str]], list[float]]:
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        raise UsageError("--reranker needs sentence-transformers (pip install 'mghkit[eval]')") from None
    try:
        model = CrossEncoder(spec, device="cpu", local_files_only=True)
    except Exception as e:  # any failure here means "cannot load offline"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"--reranker {spec!r}: cannot be loaded offline: {first}") from None

    def score(query: str, texts: list[str]) -> list[float]:
        return [float(x) for x in model.predict([(query, t) for t in texts], show_progress_bar=False)]

    return score


# ----------------------------------------------------------------------------- the front door
def mine(
    pairs: Iterable[Any] | Source,
    *,
    corpus: Iterable[Any] | Source | None = None,
    retriever: str = "bm25",
    embedder: str = "local",
    bands: str | dict[str, Band | tuple[int, int]] | None = None,
    margin: float | None = DEFAULT_MARGIN,
    reranker: str | None = None,
    seed: int = 0,
    instruction: str | None = None,
    kind: str | None = None,
    out: Source | None = None,
    resume: bool = False,
    collect: bool = True,
    batch_size: int = 64,
    workers: int = 1,
    exact_max: int = EXACT_MAX,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    max_length: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MineResult:
    """Triplets with four graded negatives for each (query, positive) pair (docs/mining.md).

    ``pairs``: records (dicts or objects) with ``query``, ``positive`` and optional
    ``instruction``, ``id``, ``kind``; a JSONL path; or a BEIR dir (queries + qrels + corpus).
    ``corpus``: texts, records with ``text`` (optional ``title``, ``_id``/``id``), a JSONL path or
    a BEIR dir; None: the BEIR corpus, or the pairs' positives. ``retriever``: bm25 | dense |
    hybrid; ``embedder`` (dense, hybrid): ``local`` (all-MiniLM-L6-v2), a sentence-transformers
    dir or id, an mghkit run dir or export. ``bands``: ``LEVEL=LO-HI[@RMIN-RMAX],...`` (see
    :mod:`mghkit.mining.grading`). ``margin``: drop candidates scoring above margin x the
    positive (None: keep them). ``reranker``: a CrossEncoder that re-checks the first band's
    candidates against the same margin. ``out``: write the triplets there (atomically; with
    ``resume``: appended as they are mined, ids already there skipped). ``collect=False``: return
    no records (bounded memory for big runs). ``progress(done, total)`` is called per batch.
    """
    t0 = time.perf_counter()
    if retriever not in RETRIEVERS:
        raise UsageError(f"unknown retriever {retriever!r} (choose from {', '.join(RETRIEVERS)})")
    if margin is not None and not margin > 0:
        raise UsageError(f"--margin {margin}: expected a number > 0 (e.g. 0.95)")
    band_map = parse_bands(bands)
    source = PairSource(pairs, corpus)
    if out is not None:
        sources = [x for x in (pairs, corpus) if isinstance(x, str | os.PathLike) and not is_beir_dir(x)]
        check_distinct_outputs(sources, out=out)
    total, of_query = source.scan()
    corpus_ = source.corpus
    if len(corpus_) < len(LEVELS) + 1:
        raise UsageError(f"the corpus is too small: {len(corpus_)} documents, need at least {len(LEVELS) + 1}")
    stats = MineStats(retriever=retriever, corpus=len(corpus_), pairs=total,
                      bands={level: str(b) for level, b in band_map.items()})  # fmt: skip
    done: set[str] = set()
    if resume and out is not None:
        from mghkit.synth.generate import done_ids

        done = done_ids(out)
    index = build_retriever(retriever, corpus_, embedder=embedder, workers=workers, exact_max=exact_max,
                            cache=cache, cache_dir=cache_dir, max_length=max_length, stats=stats)  # fmt: skip
    rerank = _cross_encoder(reranker) if reranker else None
    filt = Filter(corpus_.texts, margin=margin)
    need = depth(band_map)
    result = MineResult()
    writer = JsonlWriter(out, mode="append" if resume else "atomic") if out is not None else None
    ok = False
    try:
        seen: set[str] = set()
        batch: list[Pair] = []

        def flush() -> None:
            for t in _mine_batch(batch, source, of_query, index, filt, band_map, need, rerank, margin, seed,
                                 instruction, kind, stats):  # fmt: skip
                if writer is not None:
                    writer.write(t)
                if collect:
                    result.append(t)
            batch.clear()
            if progress is not None:
                progress(stats.resumed + stats.mined, total)

        for p in source:
            if p.id in done or p.id in seen:
                stats.resumed += p.id in done
                stats.pairs -= p.id not in done  # a repeated id is mined once
                continue
            seen.add(p.id)
            batch.append(p)
            if len(batch) >= batch_size:
                flush()
        flush()
        ok = True
    finally:
        if writer is not None:
            writer.close(ok=ok)
    stats.seconds = time.perf_counter() - t0
    result.stats = stats
    return result


def _mine_batch(batch: list[Pair], source: PairSource, of_query: dict[str, set[int]], index: Any, filt: Filter,
                bands: dict[str, Band], need: int, rerank: Any, margin: float | None, seed: int,
                instruction: str | None, kind: str | None, stats: MineStats) -> list[Triplet]:  # fmt: skip
    if not batch:
        return []
    n = len(source.corpus)
    own = [source.positions(p) for p in batch]
    k = min(n, need + 64 + max(len(of_query[p.query]) for p in batch))
    hits = index.search([p.query for p in batch], [p.instruction or instruction for p in batch], own, k)
    out = []
    for p, where, h in zip(batch, own, hits, strict=True):
        kept, dropped, h = _filtered(p, p.instruction or instruction, where, h, index, of_query[p.query], filt,
                                     need, n, k)  # fmt: skip
        if rerank is not None and margin is not None:
            kept, dr = rerank_filter(kept, bands["high"].hi, lambda texts, q=p.query: rerank(q, texts),
                                     source.corpus.texts, p.positive, margin)  # fmt: skip
            dropped["reranker"] += dr
        picks, fallbacks = pick(kept, bands, h.pos_score, seed, p.id)
        stats.fallbacks += fallbacks
        stats.dropped.update(dropped)
        chosen = [kept[i] for i in picks]
        ids = source.corpus.ids
        negatives = [HardNegative(similarity_level=level, text=source.corpus.texts[i],
                                  **({"doc_id": ids[i]} if ids[i] is not None else {}))
                     for level, (i, _, _) in zip(LEVELS, chosen, strict=True)]  # fmt: skip
        mined = {"retriever": index.name, "ranks": [r for _, _, r in chosen],
                 "scores": [round(float(s), 4) for _, s, _ in chosen],
                 "positive": {"rank": h.pos_rank, "score": round(h.pos_score, 4)},
                 "dropped": {r: dropped[r] for r in REASONS if dropped[r]}}  # fmt: skip
        out.append(Triplet(id=p.id, kind=p.kind or kind, instruction=p.instruction or instruction or "",
                           query=p.query, positive_example=p.positive, hard_negative_examples=negatives,
                           meta={"source": "mined", "mined": mined}))  # fmt: skip
        stats.mined += 1
    return out


def _filtered(p: Pair, instruction: str | None, where: list[int], h: Hits, index: Any, positives: set[int],
              filt: Filter, need: int, n: int, k: int) -> tuple[list[Any], Counter[str], Hits]:  # fmt: skip
    """Filter the hits; when the filters leave too few for the bands, search deeper (up to the corpus)."""
    own = max(where, key=lambda i: i in h.order)  # the copy the retriever ranked, if any
    while True:
        kept, dropped = filt.apply(h.order, h.scores, h.ranks, positives, own, h.pos_score, limit=need)
        if len(kept) >= need or k >= n or len(h.order) < k:
            return kept, dropped, h
        k = min(n, k * 4)
        [h] = index.search([p.query], [instruction], [where], k)
