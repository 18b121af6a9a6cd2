"""Filter a triplet file: a bad record becomes a reject with reasons, never a crash.

Checks, in order, for every line (codes as they appear in rejects and the report, see ``REASONS``):
schema -> number of negatives and their levels -> text normalisation and lengths -> a negative
identical or near-identical to its own query, positive or another negative -> a negative equal
to another record's positive -> (with an embedder) a negative that outscores the positive ->
exact and near-duplicate queries across the file (the first occurrence is kept).

The file is read twice (stdin is spooled to a temporary file first): the first pass collects a
hash of every positive, so a negative can be checked against positives further down the file.
Nothing holds the records: per kept record the indexes store about 250 bytes.

Files over 8 MB are split over worker processes (``ValidateConfig.workers``): per batch of raw
lines, stage 1 (``prepare_batch``: parsing and the per-record checks) runs in a worker and stage 2
(``_Finisher``: the checks across the file) in the main process, in file order, so the result is
the same as in one process.

    >>> import io, json
    >>> neg = lambda t: [{"similarity_level": l, "text": f"{t} {l}"} for l in LEVELS]
    >>> rows = [{"query": "latin name of sodium", "positive_example": "Natrium", "hard_negative_examples": neg("Kalium")},
    ...         {"query": "Latin name of sodium?", "positive_example": "Natrium.", "hard_negative_examples": neg("x")}]
    >>> src = io.BytesIO("".join(json.dumps(r) + "\\n" for r in rows).encode())
    >>> [(o.lineno, o.clean is not None, [r.code for r in o.reasons]) for o in validate_lines(iter_lines(src))]
    [(1, True, []), (2, False, ['duplicate_query'])]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from pydantic import ValidationError

from mghkit.dedup import (
    LshIndex,
    MinHasher,
    SortedKeys,
    WordSets,
    band_keys,
    dedup_key,
    key_hash,
    lsh_params,
    near_identical,
    normalize_text,
)
from mghkit.errors import InputError, UsageError
from mghkit.jsonl import (
    JsonText,
    Line,
    RawLine,
    describe_validation_error,
    display_name,
    dumps,
    iter_lines,
    iter_raw_lines,
    loads,
    parse_lines,
)
from mghkit.levels import Embedder, LevelStats, load_embedder
from mghkit.schema import LEVEL_RANK, LEVELS, Triplet

__all__ = ["REASONS", "Embedder", "LevelStats", "ValidateConfig", "load_embedder", "validate_file", "validate_lines"]

# code -> what it means (README and the summary table use this text)
REASONS: dict[str, str] = {
    "unparseable": "the line is not a JSON object (bad JSON, not UTF-8, over the size limit)",
    "schema": "a required field is missing or has the wrong type",
    "too_few_negatives": "fewer than 4 hard negatives",
    "too_many_negatives": "more than 4 hard negatives (levels are read by position)",
    "unknown_level": "a similarity_level other than high, medium, medium-low, low",
    "levels_out_of_order": "levels not listed most similar first",
    "empty_text": "a query, positive or negative is empty after normalisation",
    "too_short": "a text shorter than --min-chars",
    "too_long": "a text longer than --max-chars",
    "positive_is_query": "the positive is the query itself",
    "negative_is_query": "a negative is (near-)identical to the query",
    "negative_is_positive": "a negative is (near-)identical to its positive",
    "duplicate_negatives": "two negatives of the record are (near-)identical",
    "negative_is_other_positive": "a negative equals another record's positive (likely a false negative)",
    "negative_outscores_positive": "with --check-levels: a negative is closer to the query than the positive",
    "duplicate_query": "the query repeats an earlier kept record's query (after normalisation)",
    "near_duplicate_query": "the query is a near-duplicate of an earlier kept record's query (MinHash)",
}

_LEVEL_ALIASES = {level.replace("-", ""): level for level in LEVELS}
_LEVEL_EXACT = {level: level for level in LEVELS}


@dataclass(frozen=True)
class Reason:
    code: str
    field: str | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "detail": self.detail}


@dataclass
class ValidateConfig:
    """The thresholds of every check (the CLI options of the same names)."""

    min_chars: int = 2
    max_chars: int = 20_000
    dedup: bool = True
    dedup_threshold: float = 0.8  # estimated Jaccard of byte 5-grams of the query keys
    pair_threshold: float = 0.9  # Jaccard of word bigrams of two texts of one record
    cross_positives: bool = True
    strict: bool = False
    batch_size: int = 2048
    num_perm: int = 64
    workers: int | None = None  # processes for the per-record work; 0: none; None: the CPUs, for files over 8 MB

    def __post_init__(self) -> None:
        if not 0 < self.dedup_threshold <= 1 or not 0 < self.pair_threshold <= 1:
            raise UsageError("thresholds must be in (0, 1]")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers must be 0 or more (got {self.workers})")
        if self.min_chars < 0 or self.max_chars < max(1, self.min_chars):
            raise UsageError(f"need 0 <= --min-chars <= --max-chars (got {self.min_chars}, {self.max_chars})")


@dataclass
class Outcome:
    """One input line's fate: ``clean`` (the normalised record) or ``reasons`` (a reject)."""

    lineno: int
    clean: dict[str, Any] | JsonText | None
    reasons: list[Reason] = field(default_factory=list)
    original: dict[str, Any] | None = None
    original_json: str | None = None  # the original as its JSON line (from worker processes)
    raw: str | None = None
    cosines: np.ndarray | None = None  # [positive, high, medium, medium-low, low] with an embedder

    def reject_record(self, path: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"file": path, "line": self.lineno}
        original = self.original if self.original_json is None else loads(self.original_json)
        if original is not None and isinstance(original.get("id"), str):
            rec["id"] = original["id"]
        rec["reasons"] = [r.to_json() for r in self.reasons]
        if original is not None:
            rec["record"] = original
        else:
            rec["raw"] = self.raw
        return rec


# ----------------------------------------------------------------------------- per-record checks
def canonical_level(label: str) -> str | None:
    """A level label in canonical form, or None when unknown.

    >>> canonical_level(" Medium_Low "), canonical_level("very high")
    ('medium-low', None)
    """
    if label in _LEVEL_EXACT:
        return label
    key = label.strip().lower().replace("_", "").replace("-", "").replace(" ", "")
    return _LEVEL_ALIASES.get(key)


@dataclass
class _Checked:
    clean: dict[str, Any]  # the output record: normalised texts, positional levels, an id
    keys: list[str]  # dedup keys: query, positive, the 4 negatives
    texts: list[str]  # normalised texts in the same order


_PAIR_NAMES = ("the query", "the positive", "negative 0", "negative 1", "negative 2")


def check_record(obj: dict[str, Any], cfg: ValidateConfig) -> tuple[_Checked | None, list[Reason]]:
    """Schema, negatives, levels, normalisation, lengths and within-record (near-)identity."""
    try:
        t = Triplet.model_validate(obj)
    except ValidationError as e:
        field_, message = describe_validation_error(e)
        return None, [Reason("schema", field_, message)]
    reasons: list[Reason] = []
    negs = t.hard_negative_examples
    if len(negs) != 4:
        code = "too_few_negatives" if len(negs) < 4 else "too_many_negatives"
        reasons.append(Reason(code, "hard_negative_examples", f"{len(negs)} negatives, need 4"))
    ranks = []
    for i, neg in enumerate(negs):
        level = canonical_level(neg.similarity_level)
        if level is None:
            shown = neg.similarity_level[:40]
            reasons.append(Reason("unknown_level", f"hard_negative_examples.{i}.similarity_level",
                                  f"{shown!r} is not one of {', '.join(LEVELS)}"))  # fmt: skip
        else:
            ranks.append(LEVEL_RANK[level])
    if any(a < b for a, b in pairwise(ranks)):
        reasons.append(Reason("levels_out_of_order", "hard_negative_examples", "levels must run high -> low"))

    texts = [normalize_text(t.query), normalize_text(t.positive_example), *(normalize_text(n.text) for n in negs)]
    names = ["query", "positive_example", *(f"hard_negative_examples.{i}.text" for i in range(len(negs)))]
    for name, text in zip(names, texts, strict=True):
        if not text:
            reasons.append(Reason("empty_text", name, "empty after normalisation"))
        elif len(text) < cfg.min_chars:
            reasons.append(Reason("too_short", name, f"{len(text)} characters, minimum {cfg.min_chars}"))
        elif len(text) > cfg.max_chars:
            reasons.append(Reason("too_long", name, f"{len(text):,} characters, maximum {cfg.max_chars:,}"))

    keys = [dedup_key(text) for text in texts]
    lens = [len(k) for k in keys]
    words = WordSets()
    threshold = cfg.pair_threshold
    if keys[0] and keys[0] == keys[1]:
        reasons.append(Reason("positive_is_query", "positive_example", "same text as the query"))
    for n in range(2, len(keys)):
        kn, ln = keys[n], lens[n]
        if not kn:
            continue
        lo, hi = ln * threshold, ln / threshold  # near-identical texts have near-equal lengths
        for m in range(n):
            lm = lens[m]
            if lm < lo or lm > hi or not lm:
                continue
            km = keys[m]
            if kn != km and not near_identical(kn, km, threshold, words):
                continue
            code = ("negative_is_query", "negative_is_positive")[m] if m < 2 else "duplicate_negatives"
            reasons.append(Reason(code, names[n], f"(near-)identical to {_PAIR_NAMES[m]}"))
            if m >= 2:
                break
    if reasons:
        return None, reasons
    clean = {"id": t.id, **obj}
    if "instruction" in clean and isinstance(clean["instruction"], str):
        clean["instruction"] = normalize_text(clean["instruction"])
    clean["query"], clean["positive_example"] = texts[0], texts[1]
    clean["hard_negative_examples"] = [  # levels by position (the paper's example labels two "medium")
        {**neg_obj, "similarity_level": LEVELS[i], "text": texts[2 + i]}
        for i, neg_obj in enumerate(obj["hard_negative_examples"])
    ]
    return _Checked(clean, keys, texts), []


# ----------------------------------------------------------------------------- the filter
@dataclass
class _Good:
    """A record that passed the per-record checks, with what the file-level checks need."""

    outcome: Outcome
    clean: dict[str, Any] | JsonText
    query_hash: int
    negative_hashes: list[int]
    texts: list[str] | None  # only kept for the level check


@dataclass
class _Prepared:
    """Everything about one batch that can be computed without seeing other batches."""

    outcomes: list[Outcome]
    good: list[_Good]
    sigs: np.ndarray  # [len(good), num_perm] MinHash of the query keys
    bands: np.ndarray  # [len(good), bands] LSH band keys


_MINHASHERS: dict[int, MinHasher] = {}


def prepare_batch(lines: Iterable[Line], cfg: ValidateConfig, keep_texts: bool = False) -> _Prepared:
    """Stage 1 of a batch (runs in worker processes): parse outcome, per-record checks, hashes,
    MinHash signatures and band keys of the queries."""
    outcomes: list[Outcome] = []
    good: list[_Good] = []
    qkeys: list[str] = []
    for line in lines:
        if line.obj is None:
            reason = Reason("unparseable", None, line.error or "bad line")
            outcomes.append(Outcome(line.lineno, None, [reason], raw=line.raw))
            continue
        checked, reasons = check_record(line.obj, cfg)
        o = Outcome(line.lineno, None, reasons, original=line.obj)
        outcomes.append(o)
        if checked is not None:
            k = checked.keys
            texts = checked.texts if keep_texts else None
            good.append(_Good(o, checked.clean, key_hash(k[0]), [key_hash(x) for x in k[2:6]], texts))
            qkeys.append(k[0])
    minhash = _MINHASHERS.get(cfg.num_perm) or _MINHASHERS.setdefault(cfg.num_perm, MinHasher(cfg.num_perm))
    sigs = minhash.signatures(qkeys)
    bands, rows = lsh_params(cfg.dedup_threshold, cfg.num_perm)
    return _Prepared(outcomes, good, sigs, band_keys(sigs, bands, rows))


class _Dedup:
    """Exact and near-duplicate query detection across a file; only kept queries are stored."""

    def __init__(self, cfg: ValidateConfig) -> None:
        self.exact = SortedKeys()  # query key hash -> line
        self.near = LshIndex(cfg.dedup_threshold, cfg.num_perm)

    def run(self, good: list[_Good], sigs: np.ndarray, bands: np.ndarray) -> None:
        """Mark duplicates among ``good`` (in line order) against the index and each other."""
        if not good:
            return
        hashes = np.array([g.query_hash for g in good], dtype=np.uint64)
        earlier = self.exact.first(hashes)
        maybe = np.flatnonzero(self.near.candidates_exist(bands))
        near_ids, near_sims = np.full(len(good), -1, dtype=np.int64), np.zeros(len(good))
        near_ids[maybe], near_sims[maybe] = self.near.query_many(sigs[maybe], bands[maybe])
        seen_exact: dict[int, int] = {}
        local_buckets: dict[int, list[int]] = {}
        kept: list[int] = []
        band_rows = bands.tolist()
        sig16 = sigs.astype(np.uint16)  # compared as the index stores them, so batch boundaries do not matter
        for i, g in enumerate(good):
            o = g.outcome
            first = int(earlier[i]) if earlier[i] >= 0 else seen_exact.get(g.query_hash)
            if first is not None:
                o.reasons.append(Reason("duplicate_query", "query", f"same query as line {first}"))
                continue
            hit = (int(near_ids[i]), float(near_sims[i])) if near_ids[i] >= 0 else None
            if hit is None:  # compare with kept records of this batch
                cands = {j for b in band_rows[i] if b in local_buckets for j in local_buckets[b]}
                best = max(((float((sig16[i] == sig16[j]).mean()), j) for j in cands), default=(0.0, -1))
                if best[0] >= self.near.threshold:
                    hit = (good[best[1]].outcome.lineno, best[0])
            if hit is not None:
                o.reasons.append(Reason("near_duplicate_query", "query",
                                        f"near-duplicate of line {hit[0]} (est. Jaccard {hit[1]:.2f})"))  # fmt: skip
                continue
            seen_exact[g.query_hash] = o.lineno
            for b in band_rows[i]:
                local_buckets.setdefault(b, []).append(i)
            kept.append(i)
        idx = np.array(kept, dtype=np.int64)
        lines = [good[i].outcome.lineno for i in kept]
        self.exact.add(hashes[idx], np.array(lines, dtype=np.uint32))
        self.near.add(sigs[idx], bands[idx], lines)


def validate_lines(
    lines: Iterable[Line],
    cfg: ValidateConfig | None = None,
    *,
    positives: SortedKeys | None = None,
    embed: Embedder | None = None,
) -> Iterator[Outcome]:
    """Check a stream of JSONL lines; yields one Outcome per line, in order.

    ``positives`` maps hashes of positives' dedup keys to their line (see ``collect_positives``);
    ``embed`` turns on the level check.
    """
    cfg = cfg or ValidateConfig()
    finish = _Finisher(cfg, positives, embed)
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= cfg.batch_size:
            yield from finish(prepare_batch(batch, cfg, embed is not None))
            batch = []
    yield from finish(prepare_batch(batch, cfg, embed is not None))


# ----------------------------------------------------------------------------- worker processes
PARALLEL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves
PARALLEL_BATCH = 1024  # lines per task: 2 x workers tasks in flight keep memory flat


def worker_count(cfg: ValidateConfig, source: str, embed: Embedder | None) -> int:
    """Worker processes for this run: ``cfg.workers``, or by default one per CPU for a file over
    PARALLEL_MIN_BYTES. The level check (an embedder, maybe torch threads) runs in-process."""
    if embed is not None or cfg.strict:
        return 0
    if cfg.workers is not None:
        return cfg.workers
    try:
        big = os.path.getsize(source) >= PARALLEL_MIN_BYTES
    except OSError:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus if big and cpus > 1 else 0


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` in ``workers`` processes, results in order, at most 2 x workers in flight
    (memory stays flat). Raw line batches go out as bytes; workers parse and check them."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    pending: deque[Any] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(source: str, size: int) -> Iterator[list[RawLine]]:
    batch: list[RawLine] = []
    for raw in iter_raw_lines(source):
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _positives_of_batch(raw: list[RawLine]) -> tuple[np.ndarray, np.ndarray]:
    hashes, linenos = _positive_hashes(parse_lines(raw))
    return np.array(hashes, dtype=np.uint64), np.array(linenos, dtype=np.uint32)


def _prepare_raw(job: tuple[list[RawLine], ValidateConfig, bool]) -> _Prepared:
    """``prepare_batch`` in a worker, its records sent back as JSON text (the original line, the
    clean record encoded): a string crosses between processes at a fraction of a dict's cost."""
    raw, cfg, keep_texts = job
    prep = prepare_batch(parse_lines(raw), cfg, keep_texts)
    text = dict(raw)
    for o in prep.outcomes:
        if o.original is not None:
            line = text[o.lineno]
            o.original, o.original_json = None, line.decode("utf-8") if isinstance(line, bytes) else None
    for g in prep.good:
        g.clean = JsonText(dumps(g.clean))
    return prep


class _Finisher:
    """Stage 2 of each batch, in file order: negatives vs other positives, the level check,
    duplicate queries; then the clean record of each survivor."""

    def __init__(self, cfg: ValidateConfig, positives: SortedKeys | None, embed: Embedder | None) -> None:
        self.dedup = _Dedup(cfg) if cfg.dedup else None
        self.positives, self.embed = positives, embed

    def __call__(self, prep: _Prepared) -> list[Outcome]:
        good = prep.good
        if self.positives is not None and len(self.positives) and good:
            _check_other_positives(good, self.positives)
        if self.embed is not None:
            _check_levels([g for g in good if not g.outcome.reasons], self.embed)
        if self.dedup is not None:
            ok = [i for i, g in enumerate(good) if not g.outcome.reasons]
            self.dedup.run([good[i] for i in ok], prep.sigs[ok], prep.bands[ok])
        for g in good:
            if not g.outcome.reasons:
                g.outcome.clean = g.clean
        return prep.outcomes


def _check_other_positives(good: list[_Good], positives: SortedKeys) -> None:
    hashes = np.array([h for g in good for h in g.negative_hashes], dtype=np.uint64)
    lo = np.searchsorted(positives.keys, hashes, side="left")
    hi = np.searchsorted(positives.keys, hashes, side="right")
    for flat in np.flatnonzero(hi > lo).tolist():  # rare: a negative equal to some positive
        o = good[flat // 4].outcome
        other = [int(x) for x in positives.values[lo[flat] : hi[flat]] if int(x) != o.lineno]
        if other:
            o.reasons.append(Reason("negative_is_other_positive", f"hard_negative_examples.{flat % 4}.text",
                                    f"equals the positive of line {other[0]}"))  # fmt: skip


def _check_levels(good: list[_Good], embed: Embedder) -> None:
    if not good:
        return
    texts = [t for g in good for t in (g.texts or [])]
    vecs = np.asarray(embed(texts), dtype=np.float32).reshape(len(good), 6, -1)
    cos = np.einsum("nd,nkd->nk", vecs[:, 0], vecs[:, 1:])  # [n, 5]: positive, high .. low
    for g, row in zip(good, cos, strict=True):
        g.outcome.cosines = row
        worst = int(np.argmax(row[1:]))
        if row[1 + worst] > row[0]:
            g.outcome.reasons.append(Reason("negative_outscores_positive", f"hard_negative_examples.{worst}.text",
                                    f"{LEVELS[worst]} negative cosine {row[1 + worst]:.3f} > positive {row[0]:.3f}"))  # fmt: skip


def collect_positives(lines: Iterable[Line]) -> SortedKeys:
    """Pass 1: the dedup-key hash of every record's positive, with its line number."""
    hashes, linenos = _positive_hashes(lines)
    index = SortedKeys()
    index.add(np.array(hashes, dtype=np.uint64), np.array(linenos, dtype=np.uint32))
    return index


def _positive_hashes(lines: Iterable[Line]) -> tuple[list[int], list[int]]:
    hashes: list[int] = []
    linenos: list[int] = []
    for line in lines:
        pos = line.obj.get("positive_example") if line.obj is not None else None
        if isinstance(pos, str):
            key = dedup_key(normalize_text(pos))
            if key:
                hashes.append(key_hash(key))
                linenos.append(line.lineno)
    return hashes, linenos


# ----------------------------------------------------------------------------- the file-level run
@dataclass
class Report:
    input: str
    total: int = 0
    clean: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    levels: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["records_per_s"] = round(self.total / self.seconds, 1) if self.seconds else None
        d["seconds"] = round(self.seconds, 3)
        if d["levels"] is None:
            del d["levels"]
        return d


def validate_file(
    path: str,
    write_clean: Callable[[dict[str, Any]], None],
    write_reject: Callable[[dict[str, Any]], None] | None = None,
    cfg: ValidateConfig | None = None,
    *,
    embed: Embedder | None = None,
    level_stats: LevelStats | None = None,
    json_text: bool = False,
) -> Report:
    """Validate ``path`` (or ``-``), streaming clean records and rejects to the two callbacks.
    With ``cfg.strict`` the first problem raises InputError (file:line:field) instead.
    ``json_text``: ``write_clean`` also takes records as ``JsonText`` (a ``JsonlWriter`` does),
    which saves decoding what worker processes send; otherwise it always gets dicts."""
    cfg = cfg or ValidateConfig()
    name = display_name(path)
    t0 = time.perf_counter()
    spool = None
    if path == "-" and cfg.cross_positives:  # pass 1 needs to read the input twice
        spool = tempfile.NamedTemporaryFile(prefix="mghkit-stdin-", suffix=".jsonl")  # noqa: SIM115
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.flush()
    source = spool.name if spool is not None else path
    try:
        report = Report(input=name, settings={k: v for k, v in asdict(cfg).items() if k != "batch_size"})
        workers = worker_count(cfg, source, embed)
        if workers:  # the same two passes, the per-record work spread over processes
            positives = None
            if cfg.cross_positives:
                parts = list(ordered_map(_positives_of_batch, _batches(source, PARALLEL_BATCH), workers))
                positives = SortedKeys()
                if parts:
                    positives.add(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            finish = _Finisher(cfg, positives, None)
            jobs = ((raw, cfg, False) for raw in _batches(source, PARALLEL_BATCH))
            outcomes: Iterable[Outcome] = (o for prep in ordered_map(_prepare_raw, jobs, workers) for o in finish(prep))
        else:
            positives = collect_positives(iter_lines(source)) if cfg.cross_positives else None
            outcomes = validate_lines(iter_lines(source), cfg, positives=positives, embed=embed)
        counts: Counter[str] = Counter()
        for o in outcomes:
            report.total += 1
            if o.cosines is not None and level_stats is not None:
                level_stats.add(o.cosines)
            if o.clean is not None:
                report.clean += 1
                clean = o.clean if json_text or not isinstance(o.clean, JsonText) else loads(str(o.clean))
                write_clean(clean)  # type: ignore[arg-type]  # JsonText only when json_text says it is taken
                continue
            if cfg.strict:
                r = o.reasons[0]
                raise InputError(f"{r.detail} ({r.code}; --strict)", path=name, line=o.lineno, field=r.field)
            report.rejected += 1
            counts.update({r.code for r in o.reasons})
            if write_reject is not None:
                write_reject(o.reject_record(name))
    finally:
        if spool is not None:
            spool.close()
    report.reasons = dict(counts.most_common())
    if level_stats is not None:
        report.levels = level_stats.summary()
    report.seconds = time.perf_counter() - t0
    return report


def print_summary(report: Report) -> None:
    """A rich summary table on stderr: counts per reason, and the level check when it ran."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, highlight=False)
    rate = f", {report.total / report.seconds:,.0f} records/s" if report.seconds else ""
    console.print(f"validate {report.input}: {report.total:,} records, {report.clean:,} clean, "
                  f"{report.rejected:,} rejected ({report.seconds:.1f} s{rate})", soft_wrap=True)  # fmt: skip
    if report.reasons:
        table = Table("reason", "records", "meaning")
        table.columns[1].justify = "right"
        for code, n in report.reasons.items():
            table.add_row(code, f"{n:,}", REASONS.get(code, ""))
        console.print(table)
    lv = report.levels
    if lv and lv.get("checked"):
        t2 = Table(title=f"level check: cosine with the query over {lv['checked']:,} records", title_justify="left")
        t2.add_column("")
        for name in lv["mean_cosine"]:
            t2.add_column(name, justify="right")
        t2.add_row("mean", *(f"{v:.3f}" for v in lv["mean_cosine"].values()))
        t2.add_row("std", *(f"{v:.3f}" for v in lv["std_cosine"].values()))
        console.print(t2)
        sp = lv["spearman"]
        console.print(
            f"ordered as labelled (high > medium > medium-low > low): {lv['ordered_share']:.1%}; "
            f"positive above every negative: {lv['positive_first_share']:.1%}; "
            f"Spearman(level, cosine) pooled {sp['pooled']}, per-record mean {sp['per_record_mean']}"
        )
