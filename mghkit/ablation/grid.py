"""The grid of an ablation: (schedule x pooling x seed) cells, checked before anything trains.

Every cell trains the same base model on the same triplets with the same options; only its
schedule (docs/method.md section 2), its pooling (section 3) and its seed (data order and LoRA
initialisation) differ. The untrained base is one more row per pooling (no seed: it is
deterministic). A cell's run dir is ``OUT/cells/<schedule>__<pooling>__s<seed>``.

    >>> g = Grid.parse(schedules="coarse-to-fine,random", poolings="mean", seeds=2)
    >>> [c.name for c in g.cells()]
    ['coarse-to-fine__mean__s0', 'coarse-to-fine__mean__s1', 'random__mean__s0', 'random__mean__s1']
    >>> Grid.parse(schedules="hard-first")
    Traceback (most recent call last):
    mghkit.errors.UsageError: --schedules: unknown schedule 'hard-first'; valid: coarse-to-fine, fine-to-coarse, random, fixed:high, fixed:medium, fixed:medium-low, fixed:low, all
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mghkit.errors import UsageError
from mghkit.model.config import POOLINGS
from mghkit.schedules import SCHEDULES

REFERENCE_SCHEDULE = "coarse-to-fine"
BASE = "base"  # the row of the untrained model
ALL_SCHEDULES: tuple[str, ...] = SCHEDULES
ALL_POOLINGS: tuple[str, ...] = POOLINGS
# the paper's claims (docs/method.md): its schedule and its pooling are each better than the others
PAPER_SCHEDULE, PAPER_POOLING = "coarse-to-fine", "ata"


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    schedule: str
    pooling: str
    seed: int

    @property
    def row(self) -> str:
        return f"{self.schedule} / {self.pooling}"

    @property
    def name(self) -> str:
        return f"{self.schedule.replace(':', '-')}__{self.pooling}__s{self.seed}"


@dataclass(frozen=True)
class Grid:
    """The schedules, poolings and seeds of an ablation, each checked."""

    schedules: tuple[str, ...]
    poolings: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    base_rows: bool = True
    notes: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def parse(
        cls,
        *,
        schedules: str | Sequence[str] | None = None,
        poolings: str | Sequence[str] | None = None,
        seeds: int = 1,
        first_seed: int = 0,
        base_rows: bool = True,
    ) -> Grid:
        """A grid from option values (comma-separated strings or lists); None: every schedule /
        every pooling. An unknown name, a repeat, or fewer than one seed is a UsageError."""
        s = _names("--schedules", schedules, ALL_SCHEDULES, "schedule")
        p = _names("--poolings", poolings, ALL_POOLINGS, "pooling")
        if seeds < 1:
            raise UsageError(f"--seeds {seeds}: must be at least 1")
        return cls(s, p, tuple(range(first_seed, first_seed + seeds)), base_rows)

    def cells(self) -> list[Cell]:
        """Every cell, row by row (schedule, then pooling), seeds innermost."""
        return [Cell(s, p, seed) for s in self.schedules for p in self.poolings for seed in self.seeds]

    def rows(self) -> list[str]:
        """Row labels: the base rows first, then one per (schedule, pooling)."""
        base = [f"{BASE} / {p}" for p in self.poolings] if self.base_rows else []
        return base + [f"{s} / {p}" for s in self.schedules for p in self.poolings]

    def check_size(self, max_cells: int | None) -> None:
        n = len(self.cells())
        if max_cells is not None and n > max_cells:
            raise UsageError(f"the grid has {n} cells ({len(self.schedules)} schedules x {len(self.poolings)} "
                             f"poolings x {len(self.seeds)} seeds), more than --max-cells {max_cells}; "
                             "narrow --schedules/--poolings/--seeds or raise --max-cells")  # fmt: skip

    def without_pooling(self, pooling: str) -> Grid:
        return Grid(self.schedules, tuple(p for p in self.poolings if p != pooling), self.seeds, self.base_rows,
                    self.notes)  # fmt: skip


def _names(option: str, value: str | Sequence[str] | None, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    if value is None:
        return valid
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise UsageError(f"{option}: expected at least one {what}; valid: {', '.join(valid)}")
    for v in items:
        if v not in valid:
            raise UsageError(f"{option}: unknown {what} {v!r}; valid: {', '.join(valid)}")
    if len(set(items)) != len(items):
        raise UsageError(f"{option}: {what} {next(v for v in items if items.count(v) > 1)!r} is given twice")
    return tuple(items)
