"""The records that flow between commands, and the four similarity levels.

One module owns the schema (no torch, no litellm). ``stable_id`` lives in :mod:`mghkit.hashing`. Every record has a stable id and, where a
model produced it, provenance in ``meta``.

    >>> t = Triplet.model_validate({"query": "q", "positive_example": "p",
    ...     "hard_negative_examples": [{"similarity_level": "high", "text": "a"},
    ...         {"similarity_level": "medium", "text": "b"},
    ...         {"similarity_level": "medium", "text": "c"},
    ...         {"similarity_level": "low", "text": "d"}]})
    >>> [level for level, _ in t.negatives_by_level()]
    ['high', 'medium', 'medium-low', 'low']
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mghkit.hashing import stable_id

# Most similar first: the order of ``hard_negative_examples`` in every triplet file.
LEVELS: tuple[str, ...] = ("high", "medium", "medium-low", "low")
# Rank as in the paper: 4 = high ... 1 = low.
LEVEL_RANK: dict[str, int] = {level: 4 - i for i, level in enumerate(LEVELS)}
KINDS: tuple[str, ...] = ("short-long", "long-short", "long-long", "short-short", "sts")

Kind = Literal["short-long", "long-short", "long-long", "short-short", "sts"]


# How mghkit's encoder lays out a query (mghkit/model/config.py QUERY_FORMAT, E5 style): the
# anchor column of a sentence-transformers row carries it, instruction inlined.
QUERY_FORMAT = "Instruct: {task}\nQuery: {query}"
DEFAULT_INSTRUCTION = "Given a query, retrieve documents that answer the query"


def st_anchor(instruction: str, query: str) -> str:
    """``query`` in mghkit's query format with ``instruction`` as the task (the anchor column of
    a sentence-transformers row).

    >>> st_anchor("Find it", "q")
    'Instruct: Find it\\nQuery: q'
    """
    return QUERY_FORMAT.replace("{task}", instruction).replace("{query}", query)


class Record(BaseModel):
    """Base for all records: extra (provenance) fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Task(Record):
    """A brainstormed retrieval task (brainstorm output)."""

    id: str = ""
    kind: Kind
    task: str
    query_desc: str = ""
    doc_desc: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_id(self) -> Task:
        if not self.id:
            self.id = stable_id(self.kind, self.task, prefix="task-")
        return self


class HardNegative(BaseModel):
    model_config = ConfigDict(extra="allow")

    similarity_level: str
    text: str


class Triplet(Record):
    """A query, its positive and four graded hard negatives, most similar first (the paper's
    format plus provenance). Levels are read by list position, so the paper's own example
    labels (high, medium, medium, low) mean high, medium, medium-low, low."""

    id: str = ""
    task_id: str | None = None
    kind: str | None = None
    instruction: str = ""
    query: str
    positive_example: str
    hard_negative_examples: list[HardNegative]
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_id(self) -> Triplet:
        if not self.id:
            self.id = stable_id(self.query, self.positive_example, prefix="trip-")
        return self

    def negatives_by_level(self) -> list[tuple[str, str]]:
        """(level, text) pairs by list position: position 0 is high, 3 is low."""
        return [(LEVELS[i], neg.text) for i, neg in enumerate(self.hard_negative_examples[:4])]

    def negative(self, level: str) -> str | None:
        """The negative text at ``level`` (by position), or None when the list is too short."""
        i = LEVELS.index(level)
        negs = self.hard_negative_examples
        return negs[i].text if i < len(negs) else None


class Example(Record):
    """One curriculum training example, in training order."""

    id: str
    stage: int
    level: str
    instruction: str = ""
    query: str
    positive: str
    negative: str
    source_id: str | None = None


class RejectReason(BaseModel):
    """Why a record was rejected: a stable ``code`` (counted in reports), the field it concerns
    (None for the whole record) and a human-readable detail."""

    model_config = ConfigDict(extra="allow")

    code: str
    field: str | None = None
    detail: str = ""


class Reject(Record):
    """A record that did not make it, from any stage: ``generate`` writes an LLM reply that stayed
    unusable after its re-ask (``raw``, ``raw_reask``), ``validate`` a line that failed a check
    (``file``, ``line``, the original ``record`` or, for an unparsable line, ``raw``). Both write
    this one shape, so a rejects file can be read the same way whichever stage wrote it.

    >>> r = Reject(stage="validate", id="t1", reasons=[RejectReason(code="duplicate_query", field="query")])
    >>> r.codes()
    ['duplicate_query']
    """

    stage: Literal["generate", "validate", "mine"]
    id: str | None = None
    reasons: list[RejectReason]
    task_id: str | None = None
    kind: str | None = None
    file: str | None = None
    line: int | None = None
    record: dict[str, Any] | None = None
    raw: str | None = None
    raw_reask: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]
