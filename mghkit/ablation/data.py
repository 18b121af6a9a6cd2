"""The data of an ablation: the bundled man-pages split by default, and the leakage check.

Default data (no TRIPLETS given): the bundled man-pages set split by query (sha256 of seed and
query id, ``mghkit.demo.manpages_split``); training pairs get four BM25-graded negatives from
``mghkit.mine`` (docs/method.md section 1); the held-out queries and a deterministic corpus
sample are written as a BEIR dir. Documents relevant to held-out queries appear in no training
triplet, and a training pair whose query text is also a held-out query's is left out (the set
has such twins: 12 of the 150 held-out queries at seed 0).

Leakage: a held-out query whose text (case and spacing folded) is also a training query would
measure memorisation, not retrieval; it stops the run before anything trains.
"""

from __future__ import annotations

import re
from pathlib import Path

from mghkit.errors import UsageError
from mghkit.jsonl import JsonlWriter, display_name, write_text_atomic

HELDOUT_QUERIES = 150
EVAL_DOCS = 500


def default_data(folder: Path, *, seed: int = 0, heldout_queries: int = HELDOUT_QUERIES,
                 eval_docs: int = EVAL_DOCS) -> tuple[Path, Path, str]:  # fmt: skip
    """(triplets file, held-out BEIR dir, query instruction) of the bundled man-pages split, written
    under ``folder`` once (a rerun reuses them: the same seed gives the same files)."""
    import mghkit
    from mghkit.demo import MANPAGES_INSTRUCTION, eval_subset, manpages_split

    triplets, beir = folder / "triplets.jsonl", folder / "heldout"
    if triplets.is_file() and (beir / "qrels" / "test.tsv").is_file():
        return triplets, beir, MANPAGES_INSTRUCTION
    split = manpages_split(seed, max_test=heldout_queries)
    qids, doc_ids = eval_subset(split, eval_docs, seed)
    # man pages share one-line summaries (e.g. a function and its wide-character twin): a training
    # query with the text of a held-out one would leak it, so it is left out of training
    held_texts = {fold(split.queries[q]) for q in qids}
    pairs = [p for p in split.train_pairs if fold(p["query"]) not in held_texts]
    mined = mghkit.mine(pairs, corpus=split.train_corpus, seed=seed)
    (beir / "qrels").mkdir(parents=True, exist_ok=True)
    with JsonlWriter(beir / "corpus.jsonl") as w:
        w.write_all({"_id": d, "title": "", "text": split.corpus[d]} for d in doc_ids)
    with JsonlWriter(beir / "queries.jsonl") as w:
        w.write_all({"_id": q, "text": split.queries[q]} for q in qids)
    rows = [f"{q}\t{d}\t{s}" for q in qids for d, s in split.qrels[q].items()]
    write_text_atomic(beir / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    with JsonlWriter(triplets) as w:  # last: its presence marks the data complete
        w.write_all(mined)
    return triplets, beir, MANPAGES_INSTRUCTION


def fold(text: str) -> str:
    """Case and spacing folded, for comparing queries.

    >>> fold("  Copy  FILES\\n")
    'copy files'
    """
    return re.sub(r"\s+", " ", text).strip().lower()


def check_leakage(triplets: str | Path, beir: list[str | Path]) -> int:
    """Stop (UsageError) when a held-out BEIR query is also a query of the training file; returns
    the number of training records (each checked as ``mghkit train`` would: a bad line is an
    InputError naming file:line:field)."""
    from mghkit.evaluation.data import read_beir
    from mghkit.schedules import read_triplets

    seen: dict[str, int] = {}
    for lineno, t in read_triplets(str(triplets)):
        seen.setdefault(fold(t.query), lineno)
    for d in beir:
        data = read_beir(d)
        for qid, text in data.queries.items():
            line = seen.get(fold(text))
            if line is not None:
                raise UsageError(f"--eval-beir {d}: query {qid!r} ({text[:60]!r}) is also the training query of "
                                 f"{display_name(str(triplets))}:{line}: held-out data must not share queries with "
                                 "the training file")  # fmt: skip
    return len(seen)
