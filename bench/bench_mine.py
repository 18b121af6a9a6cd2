"""`mghkit mine` beside sentence-transformers' ``mine_hard_negatives``: throughput and false negatives.

Data: the bundled man-pages set. ``PAIRS`` of its (query, relevant page) pairs are mined; for each
of them the corpus also holds two KNOWN EXTRA POSITIVES that the qrels do not list: a copy that
differs in case, spacing and punctuation, and a rewrite (its sentences in reverse order, the last
one dropped). A negative that is one of those is a false negative. Both tools use the same
embedder (the embedded all-MiniLM-L6-v2, loaded inside the timed region by both), the same corpus
and exact search on this machine; repeats alternate the tools, so the ratio compares runs made
seconds apart. mghkit runs with its embedding cache off (a rerun with the cache on is shown too).
sentence-transformers runs with its defaults (``num_negatives=4``, ``range_min=0``, no margin)
and with ``relative_margin=0.05`` (its own positive-aware filter).

Scaling: the bm25 index build and query timed at the corpus, 4x and 16x it (filler documents),
extrapolated linearly in the corpus size to 1M documents; the dense side's dominant cost at 1M is encoding the corpus once
(measured docs/s; cached afterwards), its search beyond ``--exact-max`` is a faiss HNSW index.

``MGHKIT_BENCH_REPEATS`` (default 2), ``MGHKIT_BENCH_MINE_PAIRS`` (default 200) and
``MGHKIT_BENCH_MINE_MAX_LENGTH`` (default 128 tokens, both tools) change the size.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

from mghkit.evaluation.data import read_beir
from mghkit.paths import bundled_eval_dir, embedded_minilm_path

PAIRS = int(os.environ.get("MGHKIT_BENCH_MINE_PAIRS", "200"))
DOCS = int(
    os.environ.get("MGHKIT_BENCH_MINE_DOCS", "0")
)  # 0: the whole man-pages corpus; else its first N (smoke runs)
MAX_LENGTH = int(os.environ.get("MGHKIT_BENCH_MINE_MAX_LENGTH", "128"))  # tokens, both tools


def _variants(text: str) -> tuple[str, str]:
    """(a copy in other case/spacing/punctuation, a rewrite: sentences reversed, the last dropped)."""
    copy = "  ".join(text.upper().replace(".", " .").split(" "))
    sentences = [s.strip() for s in text.split(". ") if s.strip()]
    rewrite = ". ".join(reversed(sentences[:-1] if len(sentences) > 2 else sentences)) + "."
    return copy, rewrite


def build_set() -> tuple[list[dict[str, str]], list[str], set[tuple[int, str]]]:
    """(pairs, corpus, {(pair index, extra positive text)})."""
    data = read_beir(bundled_eval_dir() / "manpages-retrieval")
    corpus = {d: f"{t} {x}".strip() for d, (t, x) in data.corpus.items()}
    if DOCS:
        keep = set(list(corpus)[:DOCS]) | {d for q in sorted(data.queries)[:PAIRS] for d in data.qrels[q]}
        corpus = {d: t for d, t in corpus.items() if d in keep}
    pairs, extra = [], set()
    for i, qid in enumerate(sorted(data.queries)[:PAIRS]):
        positive = corpus[next(iter(data.qrels[qid]))]
        pairs.append({"id": qid, "query": data.queries[qid], "positive": positive})
        extra |= {(i, v) for v in _variants(positive) if v != positive}
    texts = list(dict.fromkeys([*corpus.values(), *(v for _, v in sorted(extra))]))
    return pairs, texts, extra


def fn_rate(negatives: list[list[str]], extra: set[tuple[int, str]]) -> tuple[float, float]:
    """(share of negatives that are known extra positives, share of pairs with at least one)."""
    hits = [sum((i, n) in extra for n in negs) for i, negs in enumerate(negatives)]
    return sum(hits) / max(1, 4 * len(hits)), sum(h > 0 for h in hits) / max(1, len(hits))


def _mghkit(pairs: list[dict[str, str]], corpus: list[str], *, cache: bool, cache_dir: str, **kw: Any) -> Any:
    from mghkit.mining import mine

    return mine(pairs, corpus=corpus, cache=cache, cache_dir=cache_dir, max_length=MAX_LENGTH, **kw)


def _st(pairs: list[dict[str, str]], corpus: list[str], **kw: Any) -> list[list[str]]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(str(embedded_minilm_path()), device="cpu", local_files_only=True)
    model.max_seq_length = MAX_LENGTH
    ds = Dataset.from_list([{"anchor": p["query"], "positive": p["positive"]} for p in pairs])
    out = mine_hard_negatives(ds, model, corpus=corpus, num_negatives=4, output_format="n-tuple", verbose=False,
                              batch_size=64, **kw)  # fmt: skip
    by_query: dict[str, list[str]] = {}
    for row in out:
        by_query.setdefault(row["anchor"], [row[f"negative_{k}"] for k in range(1, 5)])
    return [by_query.get(p["query"], []) for p in pairs]


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _scaling(pairs: list[dict[str, str]], corpus: list[str]) -> list[tuple[int, float, float]]:
    """(documents, index build seconds, seconds per query) of bm25 at the corpus, 4x and 16x it
    (filler documents built from its words)."""
    from mghkit.mining.retrievers import Bm25, _top

    words = " ".join(corpus).split()
    filler = [" ".join(words[(i * 131 + j * 17) % len(words)] for j in range(60)) + f" filler{i}"
              for i in range(15 * len(corpus))]  # fmt: skip
    rows = []
    for n in (len(corpus), 4 * len(corpus), 16 * len(corpus)):
        build, index = _timed(lambda n=n: Bm25((corpus + filler)[:n]))
        per_query, _ = _timed(lambda index=index: [_top(index.full_scores(p["query"]), 1100) for p in pairs])
        rows.append((n, build, per_query / len(pairs)))
    return rows


def run() -> str:
    repeats = int(os.environ.get("MGHKIT_BENCH_REPEATS", "2"))
    pairs, corpus, extra = build_set()
    cache_dir = tempfile.mkdtemp(prefix="mghkit-bench-mine-")
    times: dict[str, list[float]] = {"mghkit": [], "st": [], "st_margin": []}
    negs: dict[str, list[list[str]]] = {}
    stats = None
    from sentence_transformers import SentenceTransformer  # imports and a first load outside the timings

    SentenceTransformer(str(embedded_minilm_path()), device="cpu", local_files_only=True)
    for _ in range(repeats):
        t, res = _timed(lambda: _mghkit(pairs, corpus, retriever="dense", cache=False, cache_dir=cache_dir))
        times["mghkit"].append(t)
        negs["mghkit"], stats = [[n.text for n in x.hard_negative_examples] for x in res], res.stats
        t, negs["st"] = _timed(lambda: _st(pairs, corpus))
        times["st"].append(t)
        t, negs["st_margin"] = _timed(lambda: _st(pairs, corpus, relative_margin=0.05))
        times["st_margin"].append(t)
    _mghkit(pairs, corpus, retriever="dense", cache=True, cache_dir=cache_dir)  # fill the cache
    warm, _ = _timed(lambda: _mghkit(pairs, corpus, retriever="dense", cache=True, cache_dir=cache_dir))
    bm25_t, bm25 = _timed(lambda: _mghkit(pairs, corpus, retriever="bm25", cache=False, cache_dir=cache_dir))
    negs["bm25"] = [[n.text for n in x.hard_negative_examples] for x in bm25]
    scaling = _scaling(pairs, corpus)
    (n0, _, q0), (n1, build1, q1) = scaling[0], scaling[-1]
    q_1m = q0 + (q1 - q0) / (n1 - n0) * (1_000_000 - n0)  # seconds per query, linear in the corpus size
    build_1m = build1 / n1 * 1_000_000
    encode_rate = len(corpus) / (statistics.median(times["mghkit"]) - warm)  # docs/s of the cold run's encoding

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for key, label in [("mghkit", "mghkit mine --retriever dense (cache off)"),
                       ("st", "sentence-transformers mine_hard_negatives (defaults)"),
                       ("st_margin", "sentence-transformers, relative_margin=0.05")]:  # fmt: skip
        share, pairs_hit = fn_rate(negs[key], extra)
        rows.append(f"| {label} | {med[key]:.1f} | {len(pairs) / med[key]:.1f} | {med['st'] / med[key]:.2f}x | "
                    f"{share:.1%} | {pairs_hit:.1%} |")  # fmt: skip
    share, pairs_hit = fn_rate(negs["bm25"], extra)
    rows.append(f"| mghkit mine --retriever bm25 | {bm25_t:.1f} | {len(pairs) / bm25_t:.1f} | "
                f"{med['st'] / bm25_t:.2f}x | {share:.1%} | {pairs_hit:.1%} |")  # fmt: skip
    rows.append(f"| mghkit mine --retriever dense, embeddings cached | {warm:.1f} | {len(pairs) / warm:.1f} | "
                f"{med['st'] / warm:.2f}x | - | - |")  # fmt: skip
    assert stats is not None
    dropped = ", ".join(f"{k} {v}" for k, v in stats.dropped.most_common())
    return "\n".join(
        [
            "## mine: graded negatives vs sentence-transformers' mine_hard_negatives",
            "",
            f"{len(pairs)} man-pages pairs, a corpus of {len(corpus):,} documents ({len(extra)} of them known extra "
            f"positives: a re-cased copy and a rewrite of each positive), embedder all-MiniLM-L6-v2 on the CPU "
            f"({MAX_LENGTH} tokens), "
            f"exact search, median of {repeats} alternating repeats (a shared, noisy machine: read ratios, not "
            "seconds). A false negative is a mined negative that is a known extra positive.",
            "",
            "| run | seconds | pairs/s | speed vs ST defaults | false-negative share of negatives | pairs with one |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"mghkit's filters dropped (dense run): {dropped}.",
            "",
            "Scaling (bm25, measured): "
            + "; ".join(f"{n:,} documents: index {b:.1f} s, {q * 1000:.2f} ms a query" for n, b, q in scaling)
            + f". Linear in the corpus size, 1M documents would take {build_1m / 60:.0f} min to index and "
            f"{q_1m * 1000:.0f} ms a query ({q_1m * 1e6 / 3600:.1f} h per million pairs on one core; `--workers` "
            f"splits it). Dense at 1M: encoding the corpus once at the measured {encode_rate:.0f} docs/s is "
            f"{1e6 / encode_rate / 3600:.1f} h (then cached); the search is then a faiss HNSW index (`--exact-max`).",
        ]
    )
