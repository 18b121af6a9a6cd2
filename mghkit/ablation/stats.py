"""Means over seeds with 95% intervals, and paired differences (pure functions, no numpy needed).

The interval is Student's t: mean +- t(0.975, n-1) * sd / sqrt(n). A paired difference takes the
two rows' scores on the same seeds, so the seed's shared effect (data order, LoRA init) cancels.
One seed gives no interval (None).

    >>> s = summary([0.5, 0.7, 0.6])
    >>> round(s.mean, 3), round(s.half, 3), s.n
    (0.6, 0.248, 3)
    >>> d = paired([0.62, 0.721, 0.669], [0.60, 0.70, 0.65])
    >>> round(d.mean, 4), d.verdict()
    (0.02, 'higher')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# t(0.975, df) for df = 1..30; beyond, the normal quantile is within 2%
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom.

    >>> t975(2), t975(1000)
    (4.303, 1.96)
    """
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` values and the half-width of its 95% interval (None with one value)."""

    mean: float
    half: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def verdict(self) -> str:
        """For a difference: 'higher' / 'lower' when the interval excludes 0, else 'within noise'."""
        if self.half is None:
            return "one seed"
        if self.mean - self.half > 0:
            return "higher"
        if self.mean + self.half < 0:
            return "lower"
        return "within noise"

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "ci95": self.half, "low": self.low, "high": self.high, "n": self.n}

    def text(self, digits: int = 4) -> str:
        return f"{self.mean:.{digits}f}" + ("" if self.half is None else f" +- {self.half:.{digits}f}")


def summary(values: Sequence[float]) -> Summary:
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return Summary(mean, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Summary(mean, t975(n - 1) * sd / math.sqrt(n), n)


def paired(a: Sequence[float], b: Sequence[float]) -> Summary:
    """The mean of a - b over pairs (the same seeds) with its 95% interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values of different lengths: {len(a)} and {len(b)}")
    return summary([x - y for x, y in zip(a, b, strict=True)])
