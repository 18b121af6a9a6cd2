"""Order training examples by a schedule over the four negative levels (docs/method.md section 2).

One example per (query, level): the query with its instruction, its positive and the negative of
that level. Stages run in order and are shuffled only within a stage (by sha256 of seed and
example id, :func:`mghkit.hashing.seeded_digest`, so the same seed gives the same order everywhere).

Schedules (stage 1 first):
    coarse-to-fine   low, medium-low, medium, high      (the paper's curriculum: easy -> hard)
    fine-to-coarse   high, medium, medium-low, low      (the reverse ablation)
    random           every level of every query, shuffled together in one stage
    fixed:LEVEL      only that level, one stage
    all              no curriculum: each query's four examples kept together (queries shuffled), so
                     a step holds every query's four negatives at once (the baseline to beat)

``stages=N`` groups the schedule's levels into N consecutive stages (e.g. 2 for coarse-to-fine:
low + medium-low, then medium + high). ``stage_size=N`` keeps at most N examples per stage (the
first N of the shuffled stage).

A record missing a level (fewer than 4 negatives, or an empty negative text): by default the
record still gives examples for the levels it has and is skipped in the stages of the levels it
lacks (``missing="skip"``); ``missing="drop"`` drops the whole record so every stage sees the
same queries; ``missing="error"`` stops with an InputError naming file:line:field.

Example ids are derived from the record's id and the level, so two records with one id would
give colliding examples: a repeated id stops the run with an InputError naming file:line and
the id (``mghkit validate`` rejects repeated ids, keeping the first, so its output never stops here).

``format="sentence-transformers"`` gives rows ``{"anchor", "positive", "negative"}`` instead of
Examples, in the same order, for sentence-transformers' trainer as they are. The anchor carries the
instruction inlined in mghkit's query format (``Instruct: {task}\\nQuery: {query}``, what mghkit's
encoder sees): sentence-transformers' prompts are per column, and a curriculum mixes tasks.

    >>> t = Triplet(query="q", positive_example="p", instruction="Find it",
    ...     hard_negative_examples=[{"similarity_level": lv, "text": lv.upper()} for lv in LEVELS])
    >>> [(e.stage, e.level, e.negative) for e in curriculum([t], "coarse-to-fine")]
    [(1, 'low', 'LOW'), (2, 'medium-low', 'MEDIUM-LOW'), (3, 'medium', 'MEDIUM'), (4, 'high', 'HIGH')]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import BaseModel

from mghkit.errors import InputError, UsageError
from mghkit.hashing import seeded_digest, stable_id
from mghkit.jsonl import JsonlWriter, check_distinct_outputs, display_name, iter_lines, parse_record
from mghkit.schema import DEFAULT_INSTRUCTION, LEVELS, Example, Triplet, st_anchor
from mghkit.validate.checks import canonical_level

COARSE_TO_FINE: tuple[str, ...] = tuple(reversed(LEVELS))  # low .. high
SCHEDULES: tuple[str, ...] = ("coarse-to-fine", "fine-to-coarse", "random", *(f"fixed:{lv}" for lv in LEVELS), "all")
Missing = Literal["skip", "drop", "error"]
Format = Literal["mghkit", "sentence-transformers"]
FORMATS: tuple[str, ...] = ("mghkit", "sentence-transformers")


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
    mghkit.errors.UsageError: unknown schedule 'hard-first'; valid: coarse-to-fine, fine-to-coarse, random, fixed:high, fixed:medium, fixed:medium-low, fixed:low, all
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
    if name in ("random", "all"):
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

    @property
    def examples(self) -> int:
        return sum(self.per_stage.values())


class CurriculumExamples(list[Example]):
    """The examples in training order (a plain list), with the ``schedule`` that ordered them and
    the run's ``stats``. Empty when the examples were written to a file (``out=``)."""

    def __init__(self, examples: Iterable[Example] = (), *, schedule: Schedule, stats: CurriculumStats) -> None:
        super().__init__(examples)
        self.schedule, self.stats = schedule, stats


class CurriculumRows(list[dict[str, str]]):
    """sentence-transformers rows (anchor, positive, negative) in training order, with the
    ``schedule`` and ``stats`` of :class:`CurriculumExamples`. Empty when written to a file."""

    def __init__(self, rows: Iterable[dict[str, str]] = (), *, schedule: Schedule, stats: CurriculumStats) -> None:
        super().__init__(rows)
        self.schedule, self.stats = schedule, stats


def st_row(example: Example) -> dict[str, str]:
    """The sentence-transformers row of an Example: the anchor is the query in mghkit's query
    format with the instruction inlined; positive and negative are the texts as they are.

    >>> e = Example(id="x", stage=1, level="low", instruction="Find it", query="q", positive="p", negative="n")
    >>> st_row(e)
    {'anchor': 'Instruct: Find it\\nQuery: q', 'positive': 'p', 'negative': 'n'}
    """
    return {"anchor": st_anchor(example.instruction, example.query), "positive": example.positive,
            "negative": example.negative}  # fmt: skip


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: unknown output format; valid: {', '.join(FORMATS)}")


@overload
def curriculum(
    records: str | Path | Iterable[Triplet | dict[str, Any]],
    schedule: str = ...,
    *,
    seed: int = ...,
    stages: int | None = ...,
    stage_size: int | None = ...,
    missing: Missing = ...,
    default_instruction: str = ...,
    out: str | Path | None = ...,
    format: Literal["mghkit"] = ...,
) -> CurriculumExamples: ...
@overload
def curriculum(
    records: str | Path | Iterable[Triplet | dict[str, Any]],
    schedule: str = ...,
    *,
    seed: int = ...,
    stages: int | None = ...,
    stage_size: int | None = ...,
    missing: Missing = ...,
    default_instruction: str = ...,
    out: str | Path | None = ...,
    format: Literal["sentence-transformers"],
) -> CurriculumRows: ...
def curriculum(
    records: str | Path | Iterable[Triplet | dict[str, Any]],
    schedule: str = "coarse-to-fine",
    *,
    seed: int = 0,
    stages: int | None = None,
    stage_size: int | None = None,
    missing: Missing = "skip",
    default_instruction: str = DEFAULT_INSTRUCTION,
    out: str | Path | None = None,
    format: Format = "mghkit",
) -> CurriculumExamples | CurriculumRows:
    """Training examples of ``records`` (Triplets or dicts in memory, or a JSONL path; ``-``:
    stdin) in the order of ``schedule``; see the module doc for the schedules and options.

    Returns a list of :class:`~mghkit.schema.Example` with ``.stats`` (examples per stage, records
    missing a level) and ``.schedule``. With ``out`` the examples are written there (atomically)
    instead and the returned list is empty. ``format="sentence-transformers"``: rows
    ``{"anchor", "positive", "negative"}`` instead (:func:`st_row`), in the same order, returned
    as a :class:`CurriculumRows` or written to ``out``. Input must be valid (run
    ``validate_triplets`` first): a bad record raises :class:`~mghkit.errors.InputError` naming
    file:line:field.

    >>> t = {"query": "q", "positive_example": "p",
    ...      "hard_negative_examples": [{"similarity_level": lv, "text": lv} for lv in LEVELS[:3]]}
    >>> ex = curriculum([t], "fine-to-coarse", stages=2)
    >>> [(e.stage, e.level) for e in ex], ex.stats.missing
    ([(1, 'medium'), (1, 'high'), (2, 'medium-low')], {'low': 1})
    """
    plan = parse_schedule(schedule, stages)
    _check_options(missing, stage_size)
    check_format(format)
    is_path = isinstance(records, str | Path)
    if isinstance(records, dict | BaseModel):
        raise UsageError("curriculum takes a list of records (or a path), not a single record")
    if out is not None:
        check_distinct_outputs(str(records) if is_path else "-", out=out)
    source = display_name(records) if is_path else "<records>"  # type: ignore[arg-type]
    numbered = read_triplets(str(records)) if is_path else _numbered(records)  # type: ignore[arg-type]
    stats = CurriculumStats()
    examples = _iter_numbered(numbered, plan, seed, stage_size=stage_size, missing=missing,
                              default_instruction=default_instruction, stats=stats, source=source)  # fmt: skip
    st = format == "sentence-transformers"
    records_out: Iterable[Example | dict[str, str]] = map(st_row, examples) if st else examples
    if out is not None:
        with JsonlWriter(out) as writer:
            writer.write_all(records_out)
        records_out = ()
    if st:
        return CurriculumRows(records_out, schedule=plan, stats=stats)  # type: ignore[arg-type]
    return CurriculumExamples(records_out, schedule=plan, stats=stats)  # type: ignore[arg-type]


def _check_options(missing: str, stage_size: int | None) -> None:
    if missing not in ("skip", "drop", "error"):
        raise UsageError(f"--missing {missing!r}: unknown missing-level rule; valid: skip, drop, error")
    if stage_size is not None and stage_size < 1:
        raise UsageError(f"--stage-size {stage_size}: must be at least 1")


def _order_key(seed: int, example_id: str) -> bytes:
    return seeded_digest(seed, example_id)[:8]  # sha256(f"{seed}\x1f{example_id}"): files depend on it


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
    source: str = "<records>",
) -> Iterator[Example]:
    """Yield curriculum Examples in training order (holds the triplets, not the examples)."""
    plan = schedule if isinstance(schedule, Schedule) else parse_schedule(schedule, stages)
    _check_options(missing, stage_size)
    return _iter_numbered(enumerate(triplets, 1), plan, seed, stage_size=stage_size, missing=missing,
                          default_instruction=default_instruction, stats=stats, source=source)  # fmt: skip


def _iter_numbered(
    numbered: Iterable[tuple[int, Triplet]],
    plan: Schedule,
    seed: int,
    *,
    stage_size: int | None,
    missing: Missing,
    default_instruction: str,
    stats: CurriculumStats | None,
    source: str,
) -> Iterator[Example]:
    stats = stats if stats is not None else CurriculumStats()
    wanted = {lv for group in plan.stages for lv in group}
    kept: list[Triplet] = []
    first_line: dict[str, int] = {}
    for lineno, t in numbered:
        stats.records += 1
        if first_line.setdefault(t.id, lineno) != lineno:
            raise InputError(f"{t.id[:80]!r} repeats the id of line {first_line[t.id]}: example ids would collide "
                             "(mghkit validate keeps the first of each id)", path=source, line=lineno, field="id")  # fmt: skip
        lacking = [lv for lv in LEVELS if not (t.negative(lv) or "").strip()]
        for lv in lacking:
            stats.missing[lv] = stats.missing.get(lv, 0) + 1
        if lacking and wanted & set(lacking):
            if missing == "error":
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
                    key = _order_key(seed, t.id) if plan.name == "all" else _order_key(seed, example_id(t, lv))
                    items.append((key, i, lv))
        items.sort()  # "all": one key per query, so its four examples stay together
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
    **options: Any,
) -> list[Example]:
    """All curriculum Examples of Triplets in training order (see ``iter_curriculum`` for the options)."""
    return list(iter_curriculum(triplets, schedule, seed, **options))


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


def read_triplets(path: str) -> Iterator[tuple[int, Triplet]]:
    """(line number, Triplet) of each line of a file: the first bad line raises InputError
    (file:line:field); an unknown level label or a fifth negative is bad input here."""
    name = display_name(path)
    for line in iter_lines(path):
        if line.obj is None:
            raise InputError(line.error or "bad line", path=name, line=line.lineno)
        yield line.lineno, _checked(parse_record(line.obj, Triplet, path=name, line=line.lineno), name, line.lineno)


def _numbered(records: Iterable[Triplet | dict[str, Any]]) -> Iterator[tuple[int, Triplet]]:
    """In-memory records as (position from 1, Triplet), checked as a file's lines are."""
    for n, rec in enumerate(records, 1):
        if isinstance(rec, Triplet):
            t = rec
        elif isinstance(rec, dict):
            t = parse_record(rec, Triplet, path="<records>", line=n)
        else:
            raise InputError(f"expected a Triplet or a dict, got {type(rec).__name__}", path="<records>", line=n)
        yield n, _checked(t, "<records>", n)


def _checked(t: Triplet, name: str, lineno: int) -> Triplet:
    for i, neg in enumerate(t.hard_negative_examples):
        if i >= len(LEVELS):
            raise InputError(f"more than {len(LEVELS)} negatives", path=name, line=lineno,
                             field="hard_negative_examples")  # fmt: skip
        if canonical_level(neg.similarity_level) is None:
            raise InputError(f"unknown level {neg.similarity_level[:40]!r}; valid: {', '.join(LEVELS)}",
                             path=name, line=lineno, field=f"hard_negative_examples.{i}.similarity_level")  # fmt: skip
    return t
