"""Deterministic hashing: stable ids and seeded per-item keys (sha256, never Python's salted
``hash()`` or the global ``random`` module). One copy, used by every stage that draws, orders or
samples by (seed, id).

    >>> seeded_int(0, "q1") == seeded_int(0, "q1") != seeded_int(1, "q1")
    True
"""

from __future__ import annotations

import hashlib

SEP = "\x1f"  # unit separator: no text part can fake a boundary


def stable_id(*parts: str, prefix: str = "", n: int = 16) -> str:
    """A deterministic id from text parts.

    >>> stable_id("a", "b", prefix="t-")
    't-f04cdced9736a69d'
    """
    digest = hashlib.sha256(SEP.join(parts).encode("utf-8")).hexdigest()
    return prefix + digest[:n]


def seeded_digest(seed: int, *parts: str) -> bytes:
    """sha256 of (seed, parts...): the root of every seeded choice.

    >>> seeded_digest(0, "q1").hex()[:12]
    '8f17e917a073'
    """
    return hashlib.sha256(SEP.join((str(seed), *parts)).encode("utf-8")).digest()


def seeded_int(seed: int, *parts: str, nbytes: int = 8) -> int:
    """An unsigned integer from the first ``nbytes`` of :func:`seeded_digest` (a sort key or a draw).

    >>> seeded_int(0, "a", "colour") % 3
    1
    """
    return int.from_bytes(seeded_digest(seed, *parts)[:nbytes], "big")


def seeded_hex(seed: int, *parts: str) -> str:
    """The hex form of :func:`seeded_digest` (a sort key that also reads well in files)."""
    return seeded_digest(seed, *parts).hex()
