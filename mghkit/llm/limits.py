"""Pacing requests: ``--rpm`` / ``--tpm`` token buckets, and how long to wait before a retry
(exponential backoff with jitter, or what the server's ``Retry-After`` asked for).

    >>> backoff_delay(3, base=1.0, cap=60.0, jitter=1.0)
    8.0
    >>> backoff_delay(3, base=1.0, cap=60.0, jitter=1.0, asked=0.5)
    0.5
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any


class TokenBucket:
    """Continuously refilled bucket: ``rate`` units per second, holding at most ``capacity``.
    A take larger than the capacity waits for a full bucket and leaves a debt."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)  # at most one second's worth in a burst
        self.level = self.capacity
        self.t = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    async def take(self, n: float) -> None:
        while True:
            self._refill()
            need = min(n, self.capacity)
            if self.level >= need:
                self.level -= n
                return
            await asyncio.sleep((need - self.level) / self.rate)

    def give_back(self, n: float) -> None:
        """Correct an estimate afterwards (n may be negative: more was used than reserved)."""
        self._refill()
        self.level = min(self.capacity, self.level + n)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date).

    >>> retry_after_seconds({"retry-after": "2"})
    2.0
    >>> retry_after_seconds({"retry-after-ms": "150"})
    0.15
    """
    if not headers:
        return None
    get = headers.get
    ms = get("retry-after-ms") or get("Retry-After-Ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = get("retry-after") or get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(
    attempt: int, *, base: float, cap: float, jitter: float, asked: float | None = None, asked_max: float = 120.0
) -> float:
    """Seconds to wait before retry number ``attempt + 1``: ``base * 2**attempt`` (at most ``cap``)
    scaled by ``jitter`` in [0.5, 1]; when the server asked (``Retry-After``), what it asked (at
    most ``asked_max``), scaled by ``1 + (1 - jitter) / 5`` in [1, 1.1] - never less than asked."""
    if asked is not None:
        return min(asked, asked_max) * (1.0 + (1.0 - jitter) / 5)
    return min(cap, base * 2**attempt) * jitter
