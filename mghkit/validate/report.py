"""What a validate run returns: the counts (``Report``, written by ``--report``) and the result
that unpacks as ``(clean, rejects, report)``. The CLI renders them; nothing here prints.

    >>> r = Report(input="t.jsonl", total=3, clean=1, rejected=2, reasons={"duplicate_query": 2}, seconds=0.5)
    >>> r.to_json()["records_per_s"], r.reason_rows()
    (6.0, [('duplicate_query', 2, "the query repeats an earlier kept record's query (after normalisation)")])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mghkit.schema import Reject, Triplet
from mghkit.validate.checks import REASONS
from mghkit.validate.levels import LevelStats


@dataclass
class Report:
    """Counts of a run: records, clean, rejected, rejects per reason code (most common first),
    the settings, the level statistics (with ``check_levels``) and the wall time."""

    input: str
    total: int = 0
    clean: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    levels: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def records_per_s(self) -> float | None:
        return self.total / self.seconds if self.seconds else None

    def reason_rows(self) -> list[tuple[str, int, str]]:
        """(code, rejected records, meaning) per reason, most common first."""
        return [(code, n, REASONS.get(code, "")) for code, n in self.reasons.items()]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["records_per_s"] = round(self.total / self.seconds, 1) if self.seconds else None
        d["seconds"] = round(self.seconds, 3)
        if d["levels"] is None:
            del d["levels"]
        return d


@dataclass
class ValidationResult:
    """The clean records, the rejects and the report of a run; unpacks as that tuple.

    ``clean`` and ``rejects`` hold the records that were not written to a file (``out=`` /
    ``rejects=``), so both are empty when the run streamed to files, or ran with ``keep=False``.
    ``level_stats``: the per-record cosines when the level check ran (``.plot(path)`` draws them).
    """

    clean: list[Triplet]
    rejects: list[Reject]
    report: Report
    level_stats: LevelStats | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.clean, self.rejects, self.report))
