"""Grading: the four levels' negatives picked from the filtered candidates by rank and by score
relative to the positive (docs/mining.md has the defaults and the evidence for them).

A band is ``LO-HI`` (0-based positions among the candidates that survive the filters, most similar
first) and optionally ``@RMIN-RMAX``: only candidates whose score / positive's score lies in that
range (a band left empty by the score range falls back to its rank range; counted). Each level takes
one candidate from its band, picked by sha256(seed, pair id, level); bands past the end of a small
corpus shrink to its last candidates. The four picks are distinct and are labelled in ranking order,
so ``high`` is always the most similar of the four.

    >>> parse_bands("high=0-3,low=300-1000@0-0.5")["low"]
    Band(lo=300, hi=1000, rel_min=0.0, rel_max=0.5)
    >>> cands = [(i, 10.0 - i / 10, i + 1) for i in range(50)]
    >>> picks, fallbacks = pick(cands, {**DEFAULT_BANDS, "low": Band(40, 50)}, 10.0, 0, "p1")
    >>> [cands[p][0] for p in picks] == sorted(cands[p][0] for p in picks), fallbacks
    (True, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

from mghkit.errors import UsageError
from mghkit.hashing import seeded_int
from mghkit.schema import LEVELS

Candidate = tuple[int, float, int]


@dataclass(frozen=True)
class Band:
    lo: int
    hi: int
    rel_min: float | None = None
    rel_max: float | None = None

    def __str__(self) -> str:
        rel = "" if self.rel_min is None and self.rel_max is None else f"@{self.rel_min or 0:g}-{self.rel_max or 1:g}"
        return f"{self.lo}-{self.hi}{rel}"


# Evidence in docs/mining.md: ordered levels under validate --check-levels on the man-pages split.
DEFAULT_BANDS: dict[str, Band] = {
    "high": Band(0, 3),
    "medium": Band(5, 15),
    "medium-low": Band(30, 80),
    "low": Band(300, 1000),
}
ONE_WINDOW = {level: Band(10, 210) for level in LEVELS}  # FlagEmbedding hn_mine's default window


def _num(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--bands {spec!r}: {text!r} is not a number") from None


def parse_bands(spec: str | dict[str, Band | tuple[int, int]] | None) -> dict[str, Band]:
    """Bands from ``LEVEL=LO-HI[@RMIN-RMAX],...`` or a dict (levels not named keep their default)."""
    bands = dict(DEFAULT_BANDS)
    if isinstance(spec, dict):
        items = {k: v if isinstance(v, Band) else Band(int(v[0]), int(v[1])) for k, v in spec.items()}
    else:
        items = {}
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            level, _, rng = part.strip().partition("=")
            ranks, _, rel = rng.partition("@")
            lo, _, hi = ranks.partition("-")
            rmin, _, rmax = rel.partition("-")
            if not lo or not hi or (rel and (not rmin or not rmax)):
                raise UsageError(f"--bands {part!r}: expected LEVEL=LO-HI or LEVEL=LO-HI@RMIN-RMAX")
            items[level.strip()] = Band(int(_num(lo, part)), int(_num(hi, part)),
                                        _num(rmin, part) if rel else None, _num(rmax, part) if rel else None)  # fmt: skip
    for level, band in items.items():
        if level not in LEVELS or not 0 <= band.lo < band.hi:
            raise UsageError(f"bad band {level}: {band} (levels {', '.join(LEVELS)}; 0 <= LO < HI)")
        bands[level] = band
    return bands


def depth(bands: dict[str, Band]) -> int:
    """Candidates needed for these bands."""
    return max(b.hi for b in bands.values())


def pick(candidates: list[Candidate], bands: dict[str, Band], pos_score: float, seed: int,
         key: str) -> tuple[list[int], int]:  # fmt: skip
    """Positions (into ``candidates``) of the high .. low negatives, and how many bands fell back
    from their score range to their rank range. Fewer than 4 candidates: a UsageError."""
    n = len(candidates)
    if n < len(LEVELS):
        raise UsageError(f"the corpus is too small for the bands: {n} candidates for pair {key!r} give fewer than "
                         f"{len(LEVELS)} distinct negatives (pass a bigger corpus or smaller bands)")  # fmt: skip
    chosen: list[int] = []
    fallbacks = 0
    for level in LEVELS:
        band = bands[level]
        hi = min(band.hi, n)
        lo = min(band.lo, hi - 1)
        window = [p for p in range(lo, hi) if p not in chosen]
        if band.rel_min is not None and pos_score > 0:
            scored = [p for p in window if band.rel_min <= candidates[p][1] / pos_score <= (band.rel_max or 1.0)]
            fallbacks += not scored
            window = scored or window
        if not window:  # every position of a clipped band taken: the nearest free one
            window = [min((p for p in range(n) if p not in chosen), key=lambda p: abs(p - lo))]
        chosen.append(window[seeded_int(seed, f"{key}:{level}") % len(window)])
    return sorted(chosen), fallbacks
