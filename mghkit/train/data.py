"""The training file: read and check ALL of it before any model loads, then plan the steps.

A training file is either a curriculum file (``Example`` records, trained in file order, stage by
stage) or a triplet file (``Triplet`` records), which ``mghkit.schedules`` orders with a schedule.
Each optimizer step takes ``step_size`` = batch x grad-accum x processes consecutive examples of
one stage; stages are never mixed in a step and never shuffled across.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mghkit.errors import InputError, UsageError
from mghkit.jsonl import display_name, iter_lines, parse_record
from mghkit.model.loading import RUN_CONFIG
from mghkit.schema import LEVELS, Example, Triplet
from mghkit.train.rundir import ARGS_FILE

CURRICULUM_KEYS = frozenset({"positive", "negative"})
TRIPLET_KEYS = frozenset({"positive_example", "hard_negative_examples"})


@dataclass
class TrainData:
    """The ordered training examples and their lineage."""

    examples: list[Example]
    kind: str  # "curriculum" | "triplets"
    path: str
    sha256: str
    schedule: str | None = None
    lines: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        """Input hash and counts per stage and level, for the run dir."""
        stages = Counter(e.stage for e in self.examples)
        levels = Counter(e.level for e in self.examples)
        return {
            "input": self.path,
            "input_sha256": self.sha256,
            "kind": self.kind,
            "schedule": self.schedule,
            "records": self.lines,
            "examples": len(self.examples),
            "examples_per_stage": {str(k): stages[k] for k in sorted(stages)},
            "examples_per_level": dict(sorted(levels.items())),
            **self.extra,
        }


class _HashingReader:
    """A binary file whose every byte read also goes into a sha256: the training file is read
    once (a FIFO or ``-`` cannot be read twice), parsed and hashed in the same pass."""

    def __init__(self, fp: IO[bytes]) -> None:
        self.fp, self.sha = fp, hashlib.sha256()

    def readline(self, size: int = -1) -> bytes:
        data = self.fp.readline(size)
        self.sha.update(data)
        return data

    def drain(self) -> str:
        """The hex digest of the whole file (the rest is read when parsing stopped early)."""
        for block in iter(lambda: self.fp.read(1 << 20), b""):
            self.sha.update(block)
        return self.sha.hexdigest()


def _check_texts(rec: Example | Triplet, name: str, lineno: int) -> None:
    if isinstance(rec, Example):
        fields = {"query": rec.query, "positive": rec.positive, "negative": rec.negative}
    else:
        fields = {"query": rec.query, "positive_example": rec.positive_example}
        if not rec.hard_negative_examples:  # fewer than 4: the curriculum skips the missing levels
            raise InputError("no hard negatives (expected 4, most similar first)", path=name, line=lineno,
                             field="hard_negative_examples")  # fmt: skip
        for i, neg in enumerate(rec.hard_negative_examples[: len(LEVELS)]):
            fields[f"hard_negative_examples.{i}.text"] = neg.text
    for key, text in fields.items():
        if not text.strip():
            raise InputError("empty text", path=name, line=lineno, field=key)


def _read_and_hash(path: str | Path) -> tuple[str, list[Any], int, str]:
    """(kind, records, number of records, sha256 of the file), the file read exactly once."""
    name = display_name(path)
    if str(path) == "-":
        return _parse_records(_HashingReader(sys.stdin.buffer), name)
    if not Path(path).exists():
        raise UsageError(f"{name}: no such file")
    if Path(path).is_dir():
        raise UsageError(f"{name}: is a directory, expected a training file")
    try:
        fp = Path(path).open("rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise UsageError(f"{name}: cannot open ({e.strerror})") from None
    with fp:
        return _parse_records(_HashingReader(fp), name)


def _parse_records(reader: _HashingReader, name: str) -> tuple[str, list[Any], int, str]:
    kind: str | None = None
    records: list[Any] = []
    for line in iter_lines(reader):  # type: ignore[arg-type]  # readline is all iter_lines uses
        if line.obj is None:
            raise InputError(line.error or "bad line", path=name, line=line.lineno)
        if kind is None:
            keys = set(line.obj)
            if keys >= CURRICULUM_KEYS:
                kind = "curriculum"
            elif keys >= TRIPLET_KEYS:
                kind = "triplets"
            else:
                raise InputError(
                    "neither a curriculum example (query, positive, negative) nor a triplet "
                    "(query, positive_example, hard_negative_examples)", path=name, line=line.lineno,
                )  # fmt: skip
        model: type[Example] | type[Triplet] = Example if kind == "curriculum" else Triplet
        rec: Example | Triplet = parse_record(line.obj, model, path=name, line=line.lineno)
        _check_texts(rec, name, line.lineno)
        records.append(rec)
    if kind is None:
        raise InputError("no training records", path=name)
    return kind, records, len(records), reader.drain()


def load_training_data(path: str | Path, *, schedule: str | None = None, seed: int = 0) -> TrainData:
    """Read the whole training file (fast, no model) and put it in training order."""
    kind, records, n, sha = _read_and_hash(path)
    name = display_name(path)
    if kind == "curriculum":
        return TrainData(list(records), kind, name, sha, schedule=None, lines=n)  # type: ignore[arg-type]
    from mghkit.schedules import build_curriculum

    schedule = schedule or "coarse-to-fine"
    examples = build_curriculum(records, schedule=schedule, seed=seed)  # type: ignore[arg-type]
    return TrainData(list(examples), kind, name, sha, schedule=schedule, lines=n)


@dataclass(frozen=True)
class Step:
    """One optimizer step: the example indices (global, all processes) and its stage."""

    stage: int
    level: str
    indices: tuple[int, ...]


def stage_runs(examples: list[Example]) -> list[list[int]]:
    """Indices grouped into consecutive runs of the same stage, in file order.

    >>> ex = [Example(id=str(i), stage=s, level="low", query="q", positive="p", negative="n")
    ...       for i, s in enumerate([1, 1, 2, 2, 2])]
    >>> stage_runs(ex)
    [[0, 1], [2, 3, 4]]
    """
    runs: list[list[int]] = []
    for i, e in enumerate(examples):
        if runs and examples[runs[-1][-1]].stage == e.stage:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def plan_steps(
    examples: list[Example], step_size: int, *, steps: int | None = None, epochs: int | None = None
) -> list[Step]:
    """Every step of the run, in order: stage by stage, ``step_size`` consecutive examples each.

    With ``steps``, the steps are split equally between the stages (earlier stages take the
    remainder; fewer steps than stages is a UsageError, since a stage would never be trained); with ``epochs`` (default 1), each epoch walks every stage once. A stage's last,
    partial batch is completed from the start of the same stage, and a stage that runs out
    starts over, so every step has exactly ``step_size`` distinct examples.

    >>> ex = [Example(id=str(i), stage=1 + i // 4, level="low", query="q", positive="p", negative="n")
    ...       for i in range(8)]
    >>> [s.indices for s in plan_steps(ex, 3)]
    [(0, 1, 2), (3, 0, 1), (4, 5, 6), (7, 4, 5)]
    >>> [s.indices for s in plan_steps(ex, 2, steps=3)]
    [(0, 1), (2, 3), (4, 5)]
    """
    if steps is not None and epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    runs = stage_runs(examples)
    for run in runs:
        if len(run) < step_size:
            e = examples[run[0]]
            raise UsageError(
                f"stage {e.stage} has {len(run)} examples, fewer than one step's {step_size} "
                "(batch size x grad accum x processes); lower --batch-size or add data"
            )
    if steps is not None:
        if steps < 1:
            raise UsageError(f"--steps must be >= 1, got {steps}")
        if steps < len(runs):  # a stage with no step would silently never be trained
            raise UsageError(
                f"--steps {steps} is fewer than the {len(runs)} stages of the curriculum: every stage needs "
                f"at least one step; give --steps {len(runs)} or more, or leave --steps out (one epoch)"
            )
        quota = [steps // len(runs) + (1 if i < steps % len(runs) else 0) for i in range(len(runs))]
    else:
        n_epochs = 1 if epochs is None else epochs
        if n_epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {n_epochs}")
        quota = [-(-len(run) // step_size) * n_epochs for run in runs]
    plan: list[Step] = []
    if steps is None and len(runs) > 1 and (epochs or 1) > 1:  # epochs walk all stages, then repeat
        per_epoch = [q // (epochs or 1) for q in quota]
        for epoch in range(epochs or 1):
            for run, k in zip(runs, per_epoch, strict=True):
                plan.extend(_run_steps(examples, run, step_size, range(epoch * k, (epoch + 1) * k)))
        return plan
    for run, k in zip(runs, quota, strict=True):
        plan.extend(_run_steps(examples, run, step_size, range(k)))
    return plan


def _run_steps(examples: list[Example], run: list[int], size: int, ks: range) -> Iterator[Step]:
    first = examples[run[0]]
    per_pass = -(-len(run) // size)
    for k in ks:
        start = (k % per_pass) * size
        idx = tuple(run[(start + j) % len(run)] for j in range(size))
        levels = {examples[i].level for i in idx}
        yield Step(first.stage, first.level if len(levels) == 1 else "mixed", idx)


def length_key(example: Example) -> int:
    """The grouping key of an example: the characters of all its texts (a tokenizer-free proxy for
    its tokens; the loop then sorts a micro-batch's documents by length, see ``Batcher``).

    >>> length_key(Example(id="a", stage=1, level="low", query="q" * 5, positive="p" * 30, negative="n" * 10))
    45
    """
    return len(example.instruction or "") + len(example.query) + len(example.positive) + len(example.negative)


def group_by_length(examples: list[Example], group: int, *, seed: int = 0) -> list[Example]:
    """Length-grouped order that keeps the curriculum: within each stage (a run of the same stage,
    in file order), examples are sorted by :func:`length_key` (ties in a seeded order), cut into
    groups of ``group`` (one micro-batch of all processes: batch x processes), and the groups are shuffled (seeded), so a
    micro-batch holds texts of similar length and pads little. The stages keep their order and
    their examples; only which examples share a micro-batch changes (see docs/training.md: the
    in-batch negatives become examples of similar length). The short last group goes last, where
    :func:`plan_steps` completes a stage's partial batch from the stage's start.

    >>> ex = [Example(id=str(i), stage=1 + i // 4, level="low", query="q", positive="p" * n, negative="n")
    ...       for i, n in enumerate([9, 1, 8, 2, 5, 50, 6, 40])]
    >>> [e.id for e in group_by_length(ex, 2)]  # stage 1 = ids 0-3, stage 2 = ids 4-7
    ['1', '3', '2', '0', '7', '5', '4', '6']
    """
    from mghkit.hashing import seeded_digest

    out: list[Example] = []
    for run in stage_runs(examples):
        stage = examples[run[0]].stage
        tie = {i: seeded_digest(seed, "group-by-length", str(stage), examples[i].id, str(i)) for i in run}
        ordered = sorted(run, key=lambda i: (length_key(examples[i]), tie[i]))
        groups = [ordered[k : k + group] for k in range(0, len(ordered), group)]
        short = groups.pop() if groups and len(groups[-1]) < group else None
        groups.sort(key=lambda g: seeded_digest(seed, "group-order", str(stage), *(examples[i].id for i in g)))
        if short is not None:
            groups.append(short)
        out.extend(examples[i] for g in groups for i in g)
    return out


def padding_fraction(examples: list[Example], indices: Sequence[int], group: int, count: Callable[[str], int],
                     *, sort_documents: bool = False, packing: bool = False) -> float:  # fmt: skip
    """The share of padding tokens when ``indices`` are cut into micro-batches of ``group``, each
    padded as training pads it: queries to the longest query; the positives and negatives together
    to the longest of them, or (``sort_documents``, as the loop does with grouping on) sorted by
    length and cut into sub-batches of ``group``; or (``packing``, as ``--packing`` does) all the
    texts of a micro-batch packed into rows as long as the longest. ``count``: a text's length
    (a tokenizer, ``len``).

    >>> ex = [Example(id=str(i), stage=1, level="low", query="qq", positive="p" * n, negative="n" * n)
    ...       for i, n in enumerate([2, 6, 2, 6])]
    >>> round(padding_fraction(ex, [0, 1, 2, 3], 2, len), 3), padding_fraction(ex, [0, 2, 1, 3], 2, len)
    (0.286, 0.0)
    >>> padding_fraction(ex, [0, 1, 2, 3], 2, len, sort_documents=True)
    0.0
    >>> round(padding_fraction(ex, [0, 1, 2, 3], 2, len, packing=True), 3)  # rows [6] [6] [2 2 2] [2 . .]
    0.167
    """
    from mghkit.model.packing import pack_rows

    real = padded = 0
    for k in range(0, len(indices), group):
        chunk = [examples[i] for i in indices[k : k + group]]
        q = [count((e.instruction or "") + e.query) for e in chunk]
        d = [count(t) for e in chunk for t in (e.positive, e.negative)]
        real += sum(q) + sum(d)
        if packing:
            padded += len(pack_rows(q + d, max(q + d))) * max(q + d)
            continue
        parts = [sorted(d)[j : j + group] for j in range(0, len(d), group)] if sort_documents else [d]
        padded += max(q) * len(q) + sum(max(p) * len(p) for p in parts)
    return 1 - real / padded if padded else 0.0


def check_out(out: str | Path, *, resume: bool) -> None:
    """The run dir can take this run: a new dir (or one without a run), or one to resume, in a
    place this process may write (a read-only folder fails here, before any model loads)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    existing = next((p for p in (out, *out.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):  # the CLI: one line, exit 1
        where = "" if existing == out.absolute() else f" (cannot create it in {existing})"
        raise OSError(errno.EACCES, os.strerror(errno.EACCES) + where, str(out))
    if not resume and (out / ARGS_FILE).exists() and (has_checkpoint(out) or (out / RUN_CONFIG).exists()):
        raise UsageError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    if resume and not has_checkpoint(out):
        raise UsageError(f"{out}: no checkpoint to resume from")


def has_checkpoint(out: Path) -> bool:
    """A run that saved a checkpoint; one stopped before its first (killed, a full disk) holds
    nothing worth keeping, and a new run may start over in its dir."""
    return any((out / "checkpoints").glob("step-??????"))


def check_base_model(name: str) -> None:
    """A base model that names a missing dir fails now, before torch (``local`` and Hugging
    Face ids are looked up when the model loads)."""
    from mghkit.model import loading

    if name != loading.LOCAL_NAME and not loading.is_run_dir(name):
        loading.resolve_model_path(name)


def prepare(args: Any, world_size: int | None = None) -> tuple[TrainData, list[Step]]:
    """Check the arguments (a ``TrainArgs``) and the whole training file, and plan every step.
    No torch, no model: a bad file fails in seconds. ``world_size`` defaults to $WORLD_SIZE."""
    args.check()
    check_base_model(args.base_model)
    world = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    check_out(args.out, resume=args.resume)
    data = load_training_data(args.data, schedule=args.schedule, seed=args.seed)
    if data.kind == "curriculum" and args.schedule:
        from mghkit.schedules import parse_schedule

        parse_schedule(args.schedule)  # a typo still fails
        data.extra["note"] = f"--schedule {args.schedule} ignored: the file is a curriculum, trained in file order"
    if getattr(args, "group_by_length", False):
        # one group = one global micro-batch (its processes each take a contiguous, similar slice)
        data.examples = group_by_length(data.examples, args.batch_size * world, seed=args.seed)
    plan = plan_steps(data.examples, args.batch_size * args.grad_accum * world, steps=args.steps, epochs=args.epochs)
    return data, plan
