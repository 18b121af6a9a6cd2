"""Brainstormed tasks (docs/method.md section 1, stage 1): the kinds and their quotas, the
replies' shape, and near-duplicate removal - the pure pieces of :mod:`mghkit.synth.brainstorm`.

    >>> quotas(7, ["short-long", "sts", "long-long"])
    {'short-long': 3, 'sts': 2, 'long-long': 2}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from mghkit.errors import UsageError
from mghkit.schema import KINDS
from mghkit.synth.extract import extract_json

TEMPERATURE = 1.0
LOCAL_TEMPERATURE = 0.6
MAX_TOKENS = 4096
LOCAL_MAX_TOKENS = 1024
MAX_PER_CALL = 50
DUP_THRESHOLD = 0.7  # Jaccard similarity of content words at or above which two tasks are one
_STOP_WORDS = (
    "a an the of to for and or in on at by with from as is are be that this these those its it their "
    "given retrieve find search get return provided provide documents document query queries "
    "relevant which what when where who how"
)
_STOP = frozenset(_STOP_WORDS.split())


def parse_kinds(text: str | Sequence[str]) -> list[str]:
    """``"short-long,sts"`` -> ``["short-long", "sts"]``; an unknown kind is a UsageError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = [k.strip() for k in items if k.strip()]
    if not kinds:
        raise UsageError(f"--kinds: give at least one of {', '.join(KINDS)}")
    for k in kinds:
        if k not in KINDS:
            raise UsageError(f"--kinds: unknown kind {k!r}; choose from {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


def quotas(n_tasks: int, kinds: Sequence[str]) -> dict[str, int]:
    """Split ``n_tasks`` evenly over the kinds, the first kinds taking the remainder."""
    base, extra = divmod(n_tasks, len(kinds))
    return {k: base + (i < extra) for i, k in enumerate(kinds)}


def content_words(text: str) -> frozenset[str]:
    """The words that carry a task's meaning (lower case, no stop words, crude plural folding).

    >>> sorted(content_words("Retrieve recipes given a list of the ingredients."))
    ['ingredient', 'list', 'recipe']
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                     for w in words if w not in _STOP)  # fmt: skip


class NearDupIndex:
    """Remembers accepted texts; ``add`` says whether a text is new (and keeps it) or a near
    duplicate of one already kept (Jaccard of content words >= threshold).

    >>> idx = NearDupIndex()
    >>> idx.add("Retrieve recipes given a list of ingredients"), idx.add("Find recipes, given the list of ingredients.")
    (True, False)
    """

    def __init__(self, threshold: float = DUP_THRESHOLD) -> None:
        self.threshold = threshold
        self._sets: list[frozenset[str]] = []
        self._by_word: dict[str, list[int]] = {}

    def add(self, text: str) -> bool:
        words = content_words(text)
        if not words:
            return False
        candidates = {i for w in words for i in self._by_word.get(w, ())}
        for i in candidates:
            other = self._sets[i]
            if len(words & other) / len(words | other) >= self.threshold:
                return False
        for w in words:
            self._by_word.setdefault(w, []).append(len(self._sets))
        self._sets.append(words)
        return True


def tasks_schema(n: int) -> dict[str, Any]:
    """The bounded JSON schema the embedded model is constrained to."""
    item = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "minLength": 20, "maxLength": 160},
            "query_desc": {"type": "string", "minLength": 3, "maxLength": 80},
            "doc_desc": {"type": "string", "minLength": 3, "maxLength": 80},
        },
        "required": ["task", "query_desc", "doc_desc"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": item, "minItems": n, "maxItems": n}},
        "required": ["tasks"],
        "additionalProperties": False,
    }


def parse_tasks(text: str) -> tuple[list[dict[str, str]], int, str | None]:
    """(usable task items, number of unusable items, why the whole reply is unusable or None).

    >>> parse_tasks('{"tasks": [{"task": "Find X given Y"}, {"task": ""}, "Match A to B"]}')
    ([{'task': 'Find X given Y', 'query_desc': '', 'doc_desc': ''}, {'task': 'Match A to B', 'query_desc': '', 'doc_desc': ''}], 1, None)
    """
    obj, why = extract_json(text)
    if why is not None:
        return [], 0, why
    items = obj.get("tasks") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        return [], 0, "expected an object with a list under 'tasks'"
    good: list[dict[str, str]] = []
    bad = 0
    for item in items:
        if isinstance(item, str):
            item = {"task": item}
        if not isinstance(item, dict) or not isinstance(item.get("task"), str) or not item["task"].strip():
            bad += 1
            continue
        good.append({k: str(item.get(k) or "").strip() for k in ("task", "query_desc", "doc_desc")})
    return good, bad, None
