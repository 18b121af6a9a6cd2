"""The checks across a file, in two stages per batch of lines.

Stage 1 (``prepare_batch``: parsing outcome, the per-record checks, hashes and MinHash band keys
of the queries) needs nothing from other batches, so it can run in a worker process. Stage 2
(``Finisher``) runs in the main process in file order: a negative equal to another record's
positive, the level check (with an embedder), a repeated id, exact and near-duplicate queries
(the first kept).

A negative is checked against the positives of the whole file, further down too: pass 1
(``collect_positives``) stores a hash of every positive first. The indexes store about 250 bytes
per kept record, never the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mghkit.jsonl import JsonText, Line
from mghkit.schema import LEVELS
from mghkit.validate.checks import Outcome, Reason, ValidateConfig, check_record
from mghkit.validate.dedup import (
    LshIndex,
    MinHasher,
    SortedKeys,
    band_keys,
    dedup_key,
    key_hash,
    lsh_params,
    normalize_text,
)
from mghkit.validate.levels import Embedder, level_cosines


@dataclass
class Good:
    """A record that passed the per-record checks, with what the file-level checks need."""

    outcome: Outcome
    clean: dict[str, Any] | JsonText
    query_hash: int
    id_hash: int
    negative_hashes: list[int]
    texts: list[str] | None  # only kept for the level check


@dataclass
class Prepared:
    """Everything about one batch that can be computed without seeing other batches."""

    outcomes: list[Outcome]
    good: list[Good]
    sigs: np.ndarray  # [len(good), num_perm] MinHash of the query keys
    bands: np.ndarray  # [len(good), bands] LSH band keys


_MINHASHERS: dict[int, MinHasher] = {}


def prepare_batch(lines: Iterable[Line], cfg: ValidateConfig, keep_texts: bool = False) -> Prepared:
    """Stage 1 of a batch (runs in worker processes): parse outcome, per-record checks, hashes,
    MinHash signatures and band keys of the queries."""
    outcomes: list[Outcome] = []
    good: list[Good] = []
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
            ident = key_hash(str(checked.clean["id"]))
            good.append(Good(o, checked.clean, key_hash(k[0]), ident, [key_hash(x) for x in k[2:6]], texts))
            qkeys.append(k[0])
    minhash = _MINHASHERS.get(cfg.num_perm) or _MINHASHERS.setdefault(cfg.num_perm, MinHasher(cfg.num_perm))
    sigs = minhash.signatures(qkeys)
    bands, rows = lsh_params(cfg.dedup_threshold, cfg.num_perm)
    return Prepared(outcomes, good, sigs, band_keys(sigs, bands, rows))


class UniqueIds:
    """The ids of kept records (hash -> line): a later record with a kept record's id is rejected
    (``duplicate_id``; the first kept), so the ids of the output are unique - the curriculum's
    example ids and generate's resume-by-id depend on it. Only kept records count, as for
    duplicate queries. Used per batch: ``start``, then ``clash`` / ``keep`` in line order."""

    def __init__(self) -> None:
        self.index = SortedKeys()
        self._earlier = np.zeros(0, dtype=np.int64)
        self._batch: dict[int, int] = {}

    def start(self, good: list[Good]) -> None:
        self._earlier = self.index.first(np.array([g.id_hash for g in good], dtype=np.uint64))
        self._batch = {}

    def clash(self, i: int, g: Good) -> Reason | None:
        """The reason to reject ``good[i]`` (an earlier kept record has its id), or None."""
        first = int(self._earlier[i]) if self._earlier[i] >= 0 else self._batch.get(g.id_hash)
        return None if first is None else Reason("duplicate_id", "id", f"same id as line {first}")

    def keep(self, g: Good) -> None:
        self._batch.setdefault(g.id_hash, g.outcome.lineno)

    def finish(self) -> None:
        if self._batch:
            keys = np.fromiter(self._batch.keys(), dtype=np.uint64, count=len(self._batch))
            self.index.add(keys, np.fromiter(self._batch.values(), dtype=np.uint32, count=len(self._batch)))
        self._batch = {}


class QueryDedup:
    """Exact and near-duplicate query detection across a file; only kept queries are stored."""

    def __init__(self, cfg: ValidateConfig) -> None:
        self.exact = SortedKeys()  # query key hash -> line
        self.near = LshIndex(cfg.dedup_threshold, cfg.num_perm)

    def run(self, good: list[Good], sigs: np.ndarray, bands: np.ndarray, ids: UniqueIds | None = None) -> None:
        """Mark duplicates among ``good`` (in line order) against the index and each other;
        ``ids`` (started on ``good``): a repeated id is rejected first, and a record's id is kept
        only when its query is."""
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
            clash = ids.clash(i, g) if ids is not None else None
            if clash is not None:
                o.reasons.append(clash)
                continue
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
            if ids is not None:
                ids.keep(g)
            for b in band_rows[i]:
                local_buckets.setdefault(b, []).append(i)
            kept.append(i)
        idx = np.array(kept, dtype=np.int64)
        lines = [good[i].outcome.lineno for i in kept]
        self.exact.add(hashes[idx], np.array(lines, dtype=np.uint32))
        self.near.add(sigs[idx], bands[idx], lines)


class Finisher:
    """Stage 2 of each batch, in file order: negatives vs other positives, the level check,
    repeated ids and duplicate queries; then the clean record of each survivor."""

    def __init__(self, cfg: ValidateConfig, positives: SortedKeys | None, embed: Embedder | None) -> None:
        self.dedup = QueryDedup(cfg) if cfg.dedup else None
        self.ids = UniqueIds()  # always: unique ids are not a dedup choice
        self.positives, self.embed = positives, embed

    def __call__(self, prep: Prepared) -> list[Outcome]:
        good = prep.good
        if self.positives is not None and len(self.positives) and good:
            check_other_positives(good, self.positives)
        if self.embed is not None:
            check_levels([g for g in good if not g.outcome.reasons], self.embed)
        ok = [i for i, g in enumerate(good) if not g.outcome.reasons]
        survivors = [good[i] for i in ok]
        self.ids.start(survivors)
        if self.dedup is not None:
            self.dedup.run(survivors, prep.sigs[ok], prep.bands[ok], self.ids)
        else:
            for i, g in enumerate(survivors):
                clash = self.ids.clash(i, g)
                if clash is not None:
                    g.outcome.reasons.append(clash)
                else:
                    self.ids.keep(g)
        self.ids.finish()
        for g in good:
            if not g.outcome.reasons:
                g.outcome.clean = g.clean
        return prep.outcomes


def check_other_positives(good: list[Good], positives: SortedKeys) -> None:
    """Reject a negative whose dedup key equals the positive of another line."""
    hashes = np.array([h for g in good for h in g.negative_hashes], dtype=np.uint64)
    lo = np.searchsorted(positives.keys, hashes, side="left")
    hi = np.searchsorted(positives.keys, hashes, side="right")
    for flat in np.flatnonzero(hi > lo).tolist():  # rare: a negative equal to some positive
        o = good[flat // 4].outcome
        other = [int(x) for x in positives.values[lo[flat] : hi[flat]] if int(x) != o.lineno]
        if other:
            o.reasons.append(Reason("negative_is_other_positive", f"hard_negative_examples.{flat % 4}.text",
                                    f"equals the positive of line {other[0]}"))  # fmt: skip


def check_levels(good: list[Good], embed: Embedder) -> None:
    """Keep each record's cosines and reject one whose negative outscores its positive."""
    if not good:
        return
    cos = level_cosines([g.texts or [] for g in good], embed)
    for g, row in zip(good, cos, strict=True):
        g.outcome.cosines = row
        worst = int(np.argmax(row[1:]))
        if row[1 + worst] > row[0]:
            g.outcome.reasons.append(Reason("negative_outscores_positive", f"hard_negative_examples.{worst}.text",
                                    f"{LEVELS[worst]} negative cosine {row[1 + worst]:.3f} > positive {row[0]:.3f}"))  # fmt: skip


def collect_positives(lines: Iterable[Line]) -> SortedKeys:
    """Pass 1: the dedup-key hash of every record's positive, with its line number."""
    hashes, linenos = positive_hashes(lines)
    index = SortedKeys()
    index.add(np.array(hashes, dtype=np.uint64), np.array(linenos, dtype=np.uint32))
    return index


def positive_hashes(lines: Iterable[Line]) -> tuple[list[int], list[int]]:
    """(hashes of the positives' dedup keys, their line numbers), for ``collect_positives``."""
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
