"""E5-style per-request attributes, drawn deterministically from (seed, record id).

Every choice is a function of sha256(seed, id, name): the same seed and id always give the same
prompt, whatever the order or concurrency of the run (never Python's ``hash`` or ``random``).

    >>> attributes("short-long", 0, "x") == attributes("short-long", 0, "x")
    True
    >>> sorted(attributes("sts", 7, "task-1/0"))
    ['clarity', 'difficulty', 'doc_length', 'query_length', 'query_type']
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from mghkit.hashing import SEP, seeded_int

T = TypeVar("T")

QUERY_TYPES = ("a common query", "a long-tail query", "an extremely long-tail query")
CLARITY = ("clear", "understandable with some effort", "ambiguous")
DIFFICULTY = ("high school", "college", "PhD")
DOC_WORDS = ("about 50 words long", "about 100 words long", "about 200 words long", "about 300 words long",
             "about 400 words long", "about 500 words long")  # fmt: skip

# (query lengths, document lengths) per kind
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "short-long": (("less than 5 words long", "5 to 15 words long", "at least 10 words long"), DOC_WORDS),
    "long-short": (("about 50 words long", "about 100 words long", "about 200 words long"),
                   ("less than 10 words long", "10 to 20 words long", "one sentence long")),
    "long-long": (("about 50 words long", "about 100 words long", "about 200 words long"), DOC_WORDS),
    "short-short": (("less than 5 words long", "5 to 10 words long", "one short sentence long"),
                    ("less than 10 words long", "10 to 20 words long", "one sentence long")),
    "sts": (("less than 10 words long", "10 to 20 words long", "at least 20 words long"),
            ("one sentence long, close to the query's length", "one sentence long")),
}  # fmt: skip


def draw(seed: int, rec_id: str, name: str, choices: Sequence[T]) -> T:
    """One deterministic choice.

    >>> draw(0, "a", "colour", ["red", "green", "blue"])
    'green'
    """
    return choices[seeded_int(seed, rec_id, name) % len(choices)]


def request_seed(seed: int, rec_id: str) -> int:
    """A 31-bit seed for one request, passed to the provider (where it takes one).

    >>> request_seed(0, "a") == request_seed(0, "a") != request_seed(1, "a")
    True
    """
    return seeded_int(seed, rec_id, "seed", nbytes=4) & 0x7FFFFFFF


ATTRIBUTE_NAMES = ("query_type", "query_length", "clarity", "doc_length", "difficulty")


def attributes(kind: str, seed: int, rec_id: str) -> dict[str, str]:
    """Query type, query length, clarity, document length and difficulty for one request: five
    independent draws from the 8-byte words of one sha512(seed, id)."""
    query_lengths, doc_lengths = SHAPES[kind]
    d = hashlib.sha512(SEP.join((str(seed), rec_id, "attributes")).encode()).digest()
    choices = (QUERY_TYPES, query_lengths, CLARITY, doc_lengths, DIFFICULTY)
    return {n: c[int.from_bytes(d[8 * i : 8 * i + 8], "big") % len(c)]
            for i, (n, c) in enumerate(zip(ATTRIBUTE_NAMES, choices, strict=True))}  # fmt: skip
