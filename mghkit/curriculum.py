"""Order training examples by a schedule over the four negative levels.

One example per (query, level): the query with its instruction, its positive and the negative of
that level. Stages run in order and are shuffled only within a stage (by sha256 of seed and
example id, so the same seed gives the same order everywhere).

Schedules (stage 1 first):
    coarse-to-fine   low, medium-low, medium, high      (the paper's curriculum: easy -> hard)
    fine-to-coarse   high, medium, medium-low, low      (the reverse ablation)
    random           every level of every query, shuffled together in one stage
    fixed:LEVEL      only that level, one stage

``stages=N`` groups the schedule's levels into N consecutive stages (e.g. 2 for coarse-to-fine:
low + medium-low, then medium + high). ``stage_size=N`` keeps at most N examples per stage (the
first N of the shuffled stage).

A record missing a level (fewer than 4 negatives, or an empty negative text): by default the
record still gives examples for the levels it has and is skipped in the stages of the levels it
lacks (``missing="skip"``); ``missing="drop"`` drops the whole record so every stage sees the
same queries; ``missing="error"`` stops with an InputError naming file:line:field.

    >>> t = Triplet(query="q", positive_example="p", instruction="Find it",
    ...     hard_negative_examples=[{"similarity_level": lv, "text": lv.upper()} for lv in LEVELS])
    >>> [(e.stage, e.level, e.negative) for e in build_curriculum([t], "coarse-to-fine")]
    [(1, 'low', 'LOW'), (2, 'medium-low', 'MEDIUM-LOW'), (3, 'medium', 'MEDIUM'), (4, 'high', 'HIGH')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from mghkit.errors import InputError, UsageError
from mghkit.jsonl import display_name, iter_lines, parse_record
from mghkit.schema import LEVELS, Example, Triplet, stable_id

DEFAULT_INSTRUCTION = "Given a query, retrieve documents that answer the query"
COARSE_TO_FINE: tuple[str, ...] = tuple(reversed(LEVELS))  # low .. high
SCHEDULES: tuple[str, ...] = ("coarse-to-fine", "fine-to-coarse", "random", *(f"fixed:{lv}" for lv in LEVELS))
Missing = Literal["skip", "drop", "error"]


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the level groups of each stage, in training order."""

    name: str
    stages: tuple[tuple[str, ...], ...]


def parse_schedule(text: str, stages: int | None = None) -> Schedule:
    """Parse a schedule name; ``stages`` regroups coarse-to-fine / fine-to-coarse.

    >>> parse_schedule("fine-to-coarse").stages
    (('high',), ('medium',), ('medium-low',), ('low',))
    >>> parse_schedule("coarse-to-fine", stages=2).stages
    (('low', 'medium-low'), ('medium', 'high'))
    >>> parse_schedule("Fixed:High").stages
    (('high',),)
    >>> parse_schedule("hard-first")
    Traceback (most recent call last):
    mghkit.errors.UsageError: unknown schedule 'hard-first'; valid: coarse-to-fine, fine-to-coarse, random, fixed:high, fixed:medium, fixed:medium-low, fixed:low
    """
    name = text.strip().lower()
    if name not in SCHEDULES:
        raise UsageError(f"unknown schedule {text!r}; valid: {', '.join(SCHEDULES)}")
    if name in ("coarse-to-fine", "fine-to-coarse"):
        order = COARSE_TO_FINE if name == "coarse-to-fine" else LEVELS
        n = len(order) if stages is None else stages
        if not 1 <= n <= len(order):
            raise UsageError(f"--stages {stages}: {name} has 1 to {len(order)} stages")
        cuts = [round(i * len(order) / n) for i in range(n + 1)]
        return Schedule(name, tuple(tuple(order[cuts[i] : cuts[i + 1]]) for i in range(n)))
    if stages not in (None, 1):
        raise UsageError(f"--stages {stages}: schedule {name} has one stage")
    if name == "random":
        return Schedule(name, (LEVELS,))
    return Schedule(name, ((name.split(":", 1)[1],),))


@dataclass
class CurriculumStats:
    """What happened: examples per stage and the records that missed a level."""

    records: int = 0
    per_stage: dict[int, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)  # level -> records lacking it
    dropped: int = 0
    truncated: dict[int, int] = field(default_factory=dict)  # stage -> examples cut by stage_size


def _order_key(seed: int, example_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{example_id}".encode()).digest()[:8]


def iter_curriculum(
    triplets: Iterable[Triplet],
    schedule: str | Schedule,
    seed: int = 0,
    *,
    stages: int | None = None,
    stage_size: int | None = None,
    missing: Missing = "skip",
    default_instruction: str = DEFAULT_INSTRUCTION,
    stats: CurriculumStats | None = None,
    source: str = "<input>",
) -> Iterator[Example]:
    """Yield curriculum Examples in training order (holds the triplets, not the examples)."""
    plan = schedule if isinstance(schedule, Schedule) else parse_schedule(schedule, stages)
    if missing not in ("skip", "drop", "error"):
        raise UsageError(f"unknown missing-level rule {missing!r}; valid: skip, drop, error")
    if stage_size is not None and stage_size < 1:
        raise UsageError(f"--stage-size {stage_size}: must be at least 1")
    stats = stats if stats is not None else CurriculumStats()
    wanted = {lv for group in plan.stages for lv in group}
    kept: list[Triplet] = []
    for n, t in enumerate(triplets, 1):
        stats.records += 1
        lacking = [lv for lv in LEVELS if not (t.negative(lv) or "").strip()]
        for lv in lacking:
            stats.missing[lv] = stats.missing.get(lv, 0) + 1
        if lacking and wanted & set(lacking):
            if missing == "error":
                lineno = getattr(t, "_lineno", None) or n
                raise InputError(f"no {lacking[0]} negative (record has {len(t.hard_negative_examples)})",
                                 path=source, line=lineno, field="hard_negative_examples")  # fmt: skip
            if missing == "drop":
                stats.dropped += 1
                continue
        kept.append(t)
    for number, group in enumerate(plan.stages, 1):
        items: list[tuple[bytes, int, str]] = []
        for i, t in enumerate(kept):
            for lv in group:
                if (t.negative(lv) or "").strip():
                    items.append((_order_key(seed, example_id(t, lv)), i, lv))
        items.sort()
        if stage_size is not None and len(items) > stage_size:
            stats.truncated[number] = len(items) - stage_size
            items = items[:stage_size]
        stats.per_stage[number] = len(items)
        for _, i, lv in items:
            yield make_example(kept[i], lv, number, default_instruction)


def build_curriculum(
    triplets: Iterable[Triplet],
    schedule: str | Schedule,
    seed: int = 0,
    **options: object,
) -> list[Example]:
    """All curriculum Examples in training order (see ``iter_curriculum`` for the options)."""
    return list(iter_curriculum(triplets, schedule, seed, **options))  # type: ignore[arg-type]


def example_id(t: Triplet, level: str) -> str:
    return stable_id(t.id, level, prefix="ex-")


def make_example(t: Triplet, level: str, stage: int, default_instruction: str = DEFAULT_INSTRUCTION) -> Example:
    """The training example of ``t`` at ``level`` (its instruction, or the default)."""
    instruction = t.instruction or str(getattr(t, "task", "") or "") or default_instruction
    return Example(
        id=example_id(t, level),
        stage=stage,
        level=level,
        instruction=instruction,
        query=t.query,
        positive=t.positive_example,
        negative=t.negative(level) or "",
        source_id=t.id,
    )


def read_triplets(path: str) -> Iterator[Triplet]:
    """Triplets of a file for the curriculum: the first bad line raises InputError
    (file:line:field); an unknown level label or a fifth negative is bad input here."""
    from mghkit.validate import canonical_level

    name = display_name(path)
    for line in iter_lines(path):
        if line.obj is None:
            raise InputError(line.error or "bad line", path=name, line=line.lineno)
        t = parse_record(line.obj, Triplet, path=name, line=line.lineno)
        for i, neg in enumerate(t.hard_negative_examples):
            where = f"hard_negative_examples.{i}.similarity_level"
            if i >= len(LEVELS):
                raise InputError(f"more than {len(LEVELS)} negatives", path=name, line=line.lineno,
                                 field="hard_negative_examples")  # fmt: skip
            if canonical_level(neg.similarity_level) is None:
                raise InputError(f"unknown level {neg.similarity_level[:40]!r}; valid: {', '.join(LEVELS)}",
                                 path=name, line=line.lineno, field=where)  # fmt: skip
        object.__setattr__(t, "_lineno", line.lineno)
        yield t


def print_summary(plan: Schedule, stats: CurriculumStats) -> None:
    """One line per stage on stderr, and what happened to records missing a level."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    total = sum(stats.per_stage.values())
    console.print(
        f"curriculum {plan.name}: {stats.records:,} records -> {total:,} examples in {len(plan.stages)} stage(s)"
    )
    for number, group in enumerate(plan.stages, 1):
        cut = f" (cut {stats.truncated[number]:,} by --stage-size)" if number in stats.truncated else ""
        console.print(f"  stage {number}: {' + '.join(group):<22} {stats.per_stage.get(number, 0):>8,} examples{cut}")
    if stats.missing:
        lacking = ", ".join(f"{lv} {n:,}" for lv, n in stats.missing.items())
        console.print(
            f"  records missing a level: {lacking}" + (f"; {stats.dropped:,} dropped" if stats.dropped else "")
        )
