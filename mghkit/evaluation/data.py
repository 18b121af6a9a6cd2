"""Local evaluation data: read BEIR dirs and STS JSONL files, check them, cut deterministic subsets.

No torch or mteb here: these are plain records, read line by line. Every problem is reported as
one ``InputError`` naming ``file:line: field`` (exit 2), never a traceback.

    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = [{"sentence1": "a", "sentence2": "b", "score": 3}, {"sentence1": "c", "sentence2": "d", "score": 0}]
    >>> _ = (d / "pairs.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
    >>> read_sts(d / "pairs.jsonl").pairs
    [('a', 'b', 3.0), ('c', 'd', 0.0)]
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import InputError, UsageError
from mghkit.hashing import seeded_hex
from mghkit.jsonl import iter_lines

MAX_FIELD_BYTES = 128 * 1024  # one corpus text, query or sentence longer than this is a mistake, not data


@dataclass
class BeirData:
    """A retrieval set: documents, queries and graded relevance (query id -> doc id -> grade)."""

    name: str
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class StsData:
    """Sentence pairs with a human similarity score."""

    name: str
    pairs: list[tuple[str, str, float]]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def score_range(self) -> tuple[float, float]:
        scores = [s for _, _, s in self.pairs]
        return min(scores), max(scores)


def _need_file(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a file")
    return path


def _check_size(value: str, path: Path, line: int, key: str) -> None:
    if len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
        raise InputError(
            f"{len(value.encode('utf-8', 'surrogatepass')):,} bytes, over the {MAX_FIELD_BYTES:,}-byte limit "
            "of one text (a whole file pasted into a field?)", path=str(path), line=line, field=key,
        )  # fmt: skip


def _string(obj: dict[str, Any], key: str, path: Path, line: int, *, allow_empty: bool = False) -> str:
    if key not in obj:
        raise InputError("missing field", path=str(path), line=line, field=key)
    value = obj[key]
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", path=str(path), line=line, field=key)
    if not allow_empty and not value.strip():
        raise InputError("empty text", path=str(path), line=line, field=key)
    _check_size(value, path, line, key)
    return value


def _id(obj: dict[str, Any], path: Path, line: int) -> str:
    key = "_id" if "_id" in obj else "id"
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise InputError("missing or empty id (expected a string)", path=str(path), line=line, field="_id")
    return value


def _read_jsonl_ids(path: Path, *, with_title: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ln in iter_lines(_need_file(path)):
        if ln.obj is None:
            raise InputError(ln.error or "bad line", path=str(path), line=ln.lineno)
        rid = _id(ln.obj, path, ln.lineno)
        if rid in out:
            raise InputError(f"duplicate id {rid!r}", path=str(path), line=ln.lineno, field="_id")
        text = _string(ln.obj, "text", path, ln.lineno, allow_empty=with_title)
        if with_title:
            title = ln.obj.get("title") or ""
            if not isinstance(title, str):
                raise InputError("expected a string", path=str(path), line=ln.lineno, field="title")
            _check_size(title, path, ln.lineno, "title")
            if not (title + text).strip():
                raise InputError("empty title and text", path=str(path), line=ln.lineno, field="text")
            out[rid] = (title, text)
        else:
            out[rid] = text
    if not out:
        raise InputError("no records", path=str(path))
    return out


def read_beir(directory: str | Path, *, split: str = "test") -> BeirData:
    """Read a BEIR dir: ``corpus.jsonl`` {_id,title,text}, ``queries.jsonl`` {_id,text}, ``qrels/<split>.tsv``.

    Queries without a relevant document are dropped (mteb does the same) and counted in ``notes``.
    """
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"{d}: no such directory (expected a BEIR dir with corpus.jsonl, queries.jsonl, qrels/)")
    corpus = _read_jsonl_ids(d / "corpus.jsonl", with_title=True)
    queries = _read_jsonl_ids(d / "queries.jsonl", with_title=False)
    qrels_path = _need_file(d / "qrels" / f"{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    for lineno, row in _tsv_rows(qrels_path):
        if not row or not "".join(row).strip():
            continue
        if lineno == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue  # header
        if len(row) != 3:
            raise InputError(
                f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}",
                path=str(qrels_path),
                line=lineno,
            )
        qid, did, grade = (c.strip() for c in row)
        g = _grade(grade, qrels_path, lineno)
        if qid not in queries:
            raise InputError(
                f"unknown query id {qid!r} (not in queries.jsonl)",
                path=str(qrels_path),
                line=lineno,
                field="query-id",
            )
        if did not in corpus:
            raise InputError(
                f"unknown corpus id {did!r} (not in corpus.jsonl)",
                path=str(qrels_path),
                line=lineno,
                field="corpus-id",
            )
        qrels.setdefault(qid, {})[did] = g
    judged = {q for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if not judged:
        raise InputError("no query has a relevant document (score > 0)", path=str(qrels_path))
    notes = []
    if len(judged) < len(queries):
        notes.append(f"{len(queries) - len(judged)} queries without a relevant document dropped")
    queries = {q: t for q, t in queries.items() if q in judged}
    qrels = {q: qrels[q] for q in queries}
    return BeirData(name=d.resolve().name, corpus=corpus, queries=queries, qrels=qrels, source=str(d), notes=notes)


def _lenient(raw: str | None) -> dict[str, Any]:
    """A line JSON refused, read by Python's parser (which takes NaN and Infinity), to say which
    field was wrong; {} when that fails too."""
    try:
        obj = json.loads(raw or "")
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _literal(raw: str) -> str:
    """How the line wrote its non-finite score: NaN, Infinity, or an overflowing number."""
    found = re.search(r'"score"\s*:\s*(-?Infinity|NaN|[-+0-9.eE]+)', raw)
    return found.group(1) if found else "a value that is not a finite number"


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated cells) of a TSV file read as bytes, one line at a time: a line
    that is not UTF-8 is an InputError naming it (a BOM on the first line is dropped)."""
    with path.open("rb") as fp:
        for lineno, raw in enumerate(fp, 1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not valid UTF-8 (byte {e.start + 1})", path=str(path), line=lineno) from None
            try:
                yield lineno, next(csv.reader([text.rstrip("\r\n")], delimiter="\t"), [])
            except csv.Error as e:
                raise InputError(f"not a TSV line ({e})", path=str(path), line=lineno) from None


def _grade(text: str, path: Path, line: int) -> int:
    """A relevance grade: an integer (``2``, or ``2.0``); inf, nan, 2.5 and words are InputErrors."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value == int(value)):
        raise InputError(f"expected an integer grade, got {text!r}", path=str(path), line=line, field="score")
    return int(value)


def read_sts(path: str | Path) -> StsData:
    """Read STS JSONL: one ``{"sentence1", "sentence2", "score"}`` a line."""
    p = _need_file(Path(path))
    pairs: list[tuple[str, str, float]] = []
    for ln in iter_lines(p):
        if ln.obj is None:
            score = _lenient(ln.raw).get("score")
            if isinstance(score, float) and not math.isfinite(score):  # NaN, Infinity, 1e400: not JSON
                raise InputError(f"expected a finite number, got {_literal(ln.raw or '')}", path=str(p),
                                 line=ln.lineno, field="score")  # fmt: skip
            raise InputError(ln.error or "bad line", path=str(p), line=ln.lineno)
        s1 = _string(ln.obj, "sentence1", p, ln.lineno)
        s2 = _string(ln.obj, "sentence2", p, ln.lineno)
        score = ln.obj.get("score")
        if "score" not in ln.obj:
            raise InputError("missing field", path=str(p), line=ln.lineno, field="score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise InputError(f"expected a finite number, got {score!r}", path=str(p), line=ln.lineno, field="score")
        pairs.append((s1, s2, float(score)))
    if len(pairs) < 2:
        raise InputError(f"need at least 2 pairs for a correlation, got {len(pairs)}", path=str(p))
    lo, hi = min(s for *_, s in pairs), max(s for *_, s in pairs)
    if lo == hi:
        raise InputError("every pair has the same score; a correlation is undefined", path=str(p), field="score")
    name = p.stem if p.stem not in {"test", "dev", "train"} else p.resolve().parent.name
    return StsData(name=name, pairs=pairs, source=str(p))


def subset_beir(data: BeirData, *, max_queries: int | None, max_docs: int | None, seed: int) -> BeirData:
    """Keep ``max_queries`` queries (seeded hash order) and a corpus of at most ``max_docs`` documents.

    The corpus always keeps every judged document of the kept queries, then fills up with the
    other documents in seeded hash order, so the task stays answerable and the cut is
    deterministic. ``max_docs`` below the judged documents needed keeps those anyway (noted).
    """
    if max_queries is None and max_docs is None:
        return data
    qids = sorted(data.queries, key=lambda q: seeded_hex(seed, q))
    if max_queries is not None:
        qids = sorted(qids[:max_queries], key=list(data.queries).index)
    qrels = {q: data.qrels[q] for q in qids}
    needed = [d for d in data.corpus if any(d in qrels[q] for q in qids)]
    notes = list(data.notes)
    keep = set(needed)
    if max_docs is None:
        keep = set(data.corpus)
    elif max_docs < len(needed):
        notes.append(f"--max-docs {max_docs} < {len(needed)} judged documents of the kept queries: kept those")
    else:
        others = sorted((d for d in data.corpus if d not in keep), key=lambda d: seeded_hex(seed, d))
        keep.update(others[: max_docs - len(needed)])
    corpus = {d: v for d, v in data.corpus.items() if d in keep}
    notes.append(
        f"subset: {len(qids)}/{len(data.queries)} queries, {len(corpus)}/{len(data.corpus)} documents, seed {seed}"
    )
    return BeirData(data.name, corpus, {q: data.queries[q] for q in qids}, qrels, data.source, notes)


def subset_sts(data: StsData, *, max_pairs: int | None, seed: int) -> StsData:
    """Keep ``max_pairs`` pairs chosen in seeded hash order (file order preserved)."""
    if max_pairs is None or max_pairs >= len(data.pairs):
        return data
    idx = sorted(range(len(data.pairs)), key=lambda i: seeded_hex(seed, str(i)))[:max_pairs]
    pairs = [data.pairs[i] for i in sorted(idx)]
    notes = [*data.notes, f"subset: {len(pairs)}/{len(data.pairs)} pairs, seed {seed}"]
    return StsData(data.name, pairs, data.source, notes)
