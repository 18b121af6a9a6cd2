"""The records that flow between commands, and the four similarity levels.

One module owns the schema (no torch, no litellm). Every record has a stable id and, where a
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

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Most similar first: the order of ``hard_negative_examples`` in every triplet file.
LEVELS: tuple[str, ...] = ("high", "medium", "medium-low", "low")
# Rank as in the paper: 4 = high ... 1 = low.
LEVEL_RANK: dict[str, int] = {level: 4 - i for i, level in enumerate(LEVELS)}
KINDS: tuple[str, ...] = ("short-long", "long-short", "long-long", "short-short", "sts")

Kind = Literal["short-long", "long-short", "long-long", "short-short", "sts"]


def stable_id(*parts: str, prefix: str = "", n: int = 16) -> str:
    """A deterministic id from text parts (sha256, never Python's salted ``hash``).

    >>> stable_id("a", "b", prefix="t-")
    't-f04cdced9736a69d'
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return prefix + digest[:n]


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
