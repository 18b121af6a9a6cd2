"""The per-record checks: schema, negatives and their levels, normalisation, lengths, and a
negative (near-)identical to its own query, positive or another negative.

Each check has a stable code (``REASONS``) that rejects, reports and the summary table use.

    >>> rec = {"query": "Latin name of sodium?", "positive_example": "Natrium.",
    ...        "hard_negative_examples": [{"similarity_level": lv, "text": f"text {lv}"} for lv in LEVELS[:3]]}
    >>> checked, reasons = check_record(rec, ValidateConfig())
    >>> checked, [(r.code, r.field) for r in reasons]
    (None, [('too_few_negatives', 'hard_negative_examples')])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from pydantic import ValidationError

from mghkit.errors import UsageError
from mghkit.jsonl import JsonText, describe_validation_error, loads
from mghkit.schema import LEVEL_RANK, LEVELS, Reject, RejectReason, Triplet
from mghkit.validate.dedup import WordSets, dedup_key, near_identical, normalize_text

# code -> what it means (docs/validate.md and the summary table use this text)
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
    "duplicate_id": "the id repeats an earlier kept record's id (the first is kept)",
    "duplicate_query": "the query repeats an earlier kept record's query (after normalisation)",
    "near_duplicate_query": "the query is a near-duplicate of an earlier kept record's query (MinHash)",
}

_LEVEL_ALIASES = {level.replace("-", ""): level for level in LEVELS}
_LEVEL_EXACT = {level: level for level in LEVELS}


@dataclass(frozen=True)
class Reason:
    """One failed check: its code (a key of ``REASONS``), the field concerned and a detail."""

    code: str
    field: str | None
    detail: str

    def to_schema(self) -> RejectReason:
        return RejectReason(code=self.code, field=self.field, detail=self.detail)


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

    def to_reject(self, file: str | None) -> Reject:
        """The reject record of this line (``file`` None for in-memory records)."""
        original = self.original if self.original_json is None else loads(self.original_json)

        def text(key: str) -> str | None:
            value = original.get(key) if original is not None else None
            return value if isinstance(value, str) else None

        return Reject(
            stage="validate",
            id=text("id"),
            task_id=text("task_id"),
            kind=text("kind"),
            reasons=[r.to_schema() for r in self.reasons],
            file=file,
            line=self.lineno,
            record=original,
            raw=self.raw if original is None else None,
        )


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
class Checked:
    """A record that passed the per-record checks."""

    clean: dict[str, Any]  # the output record: normalised texts, positional levels, an id
    keys: list[str]  # dedup keys: query, positive, the 4 negatives
    texts: list[str]  # normalised texts in the same order


_PAIR_NAMES = ("the query", "the positive", "negative 0", "negative 1", "negative 2")


def check_record(obj: dict[str, Any], cfg: ValidateConfig) -> tuple[Checked | None, list[Reason]]:
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
    clean["id"] = t.id  # an empty "id" is filled as the Triplet fills it
    if "instruction" in clean and isinstance(clean["instruction"], str):
        clean["instruction"] = normalize_text(clean["instruction"])
    clean["query"], clean["positive_example"] = texts[0], texts[1]
    clean["hard_negative_examples"] = [  # levels by position (the paper's example labels two "medium")
        {**neg_obj, "similarity_level": LEVELS[i], "text": texts[2 + i]}
        for i, neg_obj in enumerate(obj["hard_negative_examples"])
    ]
    return Checked(clean, keys, texts), []
