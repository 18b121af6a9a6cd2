"""The runs: ``validate_triplets`` (the front door), ``validate_file`` (a file streamed to two
callbacks) and ``validate_lines`` (a stream of parsed lines to outcomes).

A file is read twice: pass 1 collects a hash of every positive, so a negative can be checked
against positives further down the file. An input that cannot be read twice (``-``, a FIFO,
``/dev/stdin``, a process substitution) is first copied once to a temp file in ``$TMPDIR``
(``mghkit-input-*.jsonl``, removed afterwards). Nothing holds the records when the output goes
to files.

Outputs go through :mod:`mghkit.files`: a regular file is written as a temp file beside it
(``.NAME.XXXXXXXX.tmp``) and renamed into place at the end, so an interrupted run leaves the
previous output as it was; SIGTERM and Ctrl-C remove the temp files and stop the worker
processes. After a kill -9 of the main process the workers notice and exit, but the dead
process's temp files stay behind (``.NAME.*.tmp`` beside the output, ``mghkit-input-*.jsonl``
in ``$TMPDIR``): delete them by hand.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable
from contextlib import ExitStack, closing, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mghkit.errors import InputError, UsageError
from mghkit.files import AtomicFile, check_writable_path, naming, seekable
from mghkit.jsonl import (
    JsonlWriter,
    JsonText,
    Line,
    check_distinct_outputs,
    display_name,
    iter_lines,
    loads,
    write_json_atomic,
)
from mghkit.schema import DEFAULT_INSTRUCTION, Reject, Triplet, st_anchor
from mghkit.validate.checks import Outcome, ValidateConfig
from mghkit.validate.crossfile import Finisher, collect_positives, prepare_batch
from mghkit.validate.dedup import SortedKeys
from mghkit.validate.levels import Embedder, LevelStats, load_embedder
from mghkit.validate.parallel import parallel_outcomes, worker_count
from mghkit.validate.report import Report, ValidationResult

IN_MEMORY = "<records>"  # the input name of in-memory records (reports, --strict errors)

Records = str | Path | Iterable[Triplet | dict[str, Any]]


def validate_triplets(
    records: Records,
    *,
    out: str | Path | None = None,
    rejects: str | Path | None = None,
    report: str | Path | None = None,
    dedup: bool = True,
    dedup_threshold: float = 0.8,
    pair_threshold: float = 0.9,
    min_chars: int = 2,
    max_chars: int = 20_000,
    strict: bool = False,
    check_levels: bool = False,
    embedder: str | Embedder = "local",
    plot: str | Path | None = None,
    workers: int | None = None,
    keep: bool = True,
    format: str = "mghkit",
    cross_positives: bool = True,
) -> ValidationResult:
    """Filter triplets: every bad record becomes a :class:`~mghkit.schema.Reject` with reasons,
    never a crash. Returns a result that unpacks as ``(clean, rejects, report)``.

    ``records``: Triplets or dicts in memory, or a JSONL path (``-``: stdin). ``out`` /
    ``rejects`` / ``report``: also write the clean records, the rejects and the JSON report
    there (atomically; a clean record or reject written to a file is not held in memory, so
    that list comes back empty and memory stays flat). ``keep=False``: hold no records at all,
    only count them. ``strict``: raise :class:`~mghkit.errors.InputError` (file:line:field) at
    the first problem instead. ``check_levels``: embed every record with ``embedder`` ('local':
    the embedded all-MiniLM-L6-v2; a sentence-transformers dir; or any function from texts to
    L2-normalised rows), reject a negative that outscores its positive, and report per-level
    cosines (``plot``: draw them as a PNG). ``workers``: processes for a file's per-record
    checks (0: none; None: one per CPU for files over 8 MB; in-memory records run in this
    process); the output is the same either way. The checks: docs/validate.md.

    >>> neg = lambda t: [{"similarity_level": lv, "text": f"{t} {i}"} for i, lv in enumerate(("high", "medium", "medium", "low"))]
    >>> rows = [{"query": "latin name of sodium", "positive_example": "Natrium", "hard_negative_examples": neg("Kalium")},
    ...         {"query": "Latin name of sodium?", "positive_example": "Natrium.", "hard_negative_examples": neg("x")}]
    >>> clean, rejects, report = validate_triplets(rows)
    >>> [t.query for t in clean], [(r.line, r.codes()) for r in rejects], (report.clean, report.rejected)
    (['latin name of sodium'], [(2, ['duplicate_query'])], (1, 1))
    >>> [n.similarity_level for n in clean[0].hard_negative_examples]  # levels by position
    ['high', 'medium', 'medium-low', 'low']
    """
    cfg = ValidateConfig(min_chars=min_chars, max_chars=max_chars, dedup=dedup, dedup_threshold=dedup_threshold,
                         pair_threshold=pair_threshold, strict=strict, workers=workers,
                         cross_positives=cross_positives)  # fmt: skip
    is_path = isinstance(records, str | Path)
    if isinstance(records, dict | BaseModel):
        raise UsageError("validate_triplets takes a list of records (or a path), not a single record")
    check_distinct_outputs(str(records) if is_path else "-", out=out, rejects=rejects, report=report, plot=plot)
    for option, value in (("--out", out), ("--rejects", rejects), ("--report", report), ("--plot", plot)):
        if value is not None:  # fail before any output is written
            check_writable_path(value, option)
    if plot and not check_levels:
        raise UsageError("--plot needs --check-levels (it draws the per-level similarities)")
    if format not in ("mghkit", "sentence-transformers"):
        raise UsageError(f"--format {format!r}: unknown output format; valid: mghkit, sentence-transformers")
    st_rows = format == "sentence-transformers"
    embed = None
    if check_levels:
        embed = load_embedder(embedder) if isinstance(embedder, str) else embedder
    stats = LevelStats() if check_levels else None

    clean: list[Triplet] = []
    rejected: list[Reject] = []
    with ExitStack() as stack:
        write_clean: Callable[[Any], None] | None = None
        if out is not None:
            write_clean = stack.enter_context(JsonlWriter(out)).write
        elif keep:
            write_clean = clean.append if st_rows else lambda rec: clean.append(Triplet.model_validate(rec))  # type: ignore[arg-type]
        if st_rows and write_clean is not None:
            write_clean = _as_st_row(write_clean)
        write_reject: Callable[[Reject], None] | None = None
        if rejects is not None:
            write_reject = stack.enter_context(JsonlWriter(rejects)).write
        elif keep:
            write_reject = rejected.append
        if is_path:
            result = validate_file(str(records), write_clean, write_reject, cfg, embed=embed, level_stats=stats,
                                   json_text=out is not None and not st_rows)  # fmt: skip
        else:
            result = _validate_records(records, write_clean, write_reject, cfg, embed=embed, level_stats=stats)  # type: ignore[arg-type]
    if report is not None:
        write_json_atomic(report, result.to_json())
    if plot is not None and stats is not None:
        with AtomicFile(plot, binary=True) as png, naming(plot):  # a device stays one; a failed save keeps the old file
            stats.plot(png.fp)
    return ValidationResult(clean, rejected, result, stats)


def validate_lines(
    lines: Iterable[Line],
    cfg: ValidateConfig | None = None,
    *,
    positives: SortedKeys | None = None,
    embed: Embedder | None = None,
) -> Generator[Outcome, None, None]:
    """Check a stream of JSONL lines; yields one Outcome per line, in order.

    ``positives`` maps hashes of positives' dedup keys to their line (see ``collect_positives``);
    ``embed`` turns on the level check.
    """
    cfg = cfg or ValidateConfig()
    finish = Finisher(cfg, positives, embed)
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= cfg.batch_size:
            yield from finish(prepare_batch(batch, cfg, embed is not None))
            batch = []
    yield from finish(prepare_batch(batch, cfg, embed is not None))


def validate_file(
    path: str,
    write_clean: Callable[[dict[str, Any]], None] | None,
    write_reject: Callable[[Reject], None] | None = None,
    cfg: ValidateConfig | None = None,
    *,
    embed: Embedder | None = None,
    level_stats: LevelStats | None = None,
    json_text: bool = False,
) -> Report:
    """Validate ``path`` (or ``-``), streaming clean records and rejects to the two callbacks.
    With ``cfg.strict`` the first problem raises InputError (file:line:field) instead.
    ``json_text``: ``write_clean`` also takes records as ``JsonText`` (a ``JsonlWriter`` does),
    which saves decoding what worker processes send; otherwise it always gets dicts."""
    cfg = cfg or ValidateConfig()
    name = display_name(path)
    t0 = time.perf_counter()
    # pass 1 reads the input once more: stdin, a FIFO or /dev/fd/N is copied to a temp file first
    with seekable(path) if cfg.cross_positives else nullcontext(path) as source:
        workers = worker_count(cfg, source, embed)
        if workers:  # the same two passes, the per-record work spread over processes
            outcomes: Generator[Outcome, None, None] = parallel_outcomes(source, cfg, workers)
        else:
            positives = collect_positives(iter_lines(source)) if cfg.cross_positives else None
            outcomes = validate_lines(iter_lines(source), cfg, positives=positives, embed=embed)
        with closing(outcomes):  # an error or a signal stops the workers here, not at garbage collection
            report = _consume(outcomes, cfg, name, name, write_clean, write_reject, level_stats, json_text)
    report.seconds = time.perf_counter() - t0
    return report


def _validate_records(
    records: Iterable[Triplet | dict[str, Any]],
    write_clean: Callable[[dict[str, Any]], None] | None,
    write_reject: Callable[[Reject], None] | None,
    cfg: ValidateConfig,
    *,
    embed: Embedder | None,
    level_stats: LevelStats | None,
) -> Report:
    """``validate_file`` for records in memory (numbered from 1, in this process)."""
    t0 = time.perf_counter()
    lines = [_as_line(i, r) for i, r in enumerate(records, 1)]
    positives = collect_positives(lines) if cfg.cross_positives else None
    outcomes = validate_lines(lines, cfg, positives=positives, embed=embed)
    report = _consume(outcomes, cfg, IN_MEMORY, None, write_clean, write_reject, level_stats, False)
    report.seconds = time.perf_counter() - t0
    return report


def _as_line(lineno: int, record: object) -> Line:
    if isinstance(record, BaseModel):
        dump = getattr(record, "to_json", None)
        return Line(lineno, dump() if dump else record.model_dump(mode="json"))
    if isinstance(record, dict):
        return Line(lineno, record)
    return Line(lineno, None, f"expected a Triplet or a dict, got {type(record).__name__}", repr(record)[:2000])


def _consume(
    outcomes: Iterable[Outcome],
    cfg: ValidateConfig,
    name: str,
    reject_file: str | None,
    write_clean: Callable[[Any], None] | None,
    write_reject: Callable[[Reject], None] | None,
    level_stats: LevelStats | None,
    json_text: bool,
) -> Report:
    """Count the outcomes, hand each clean record and reject to its callback (or raise at the
    first problem with ``cfg.strict``)."""
    report = Report(input=name, settings={k: v for k, v in asdict(cfg).items() if k != "batch_size"})
    counts: Counter[str] = Counter()
    for o in outcomes:
        report.total += 1
        if o.cosines is not None and level_stats is not None:
            level_stats.add(o.cosines)
        if o.clean is not None:
            report.clean += 1
            if write_clean is not None:
                write_clean(o.clean if json_text or not isinstance(o.clean, JsonText) else loads(str(o.clean)))
            continue
        if cfg.strict:
            r = o.reasons[0]
            raise InputError(f"{r.detail} ({r.code}; --strict)", path=name, line=o.lineno, field=r.field)
        report.rejected += 1
        counts.update({r.code for r in o.reasons})
        if write_reject is not None:
            write_reject(o.to_reject(reject_file))
    report.reasons = dict(counts.most_common())
    if level_stats is not None:
        report.levels = level_stats.summary()
    return report


def _as_st_row(write: Callable[[Any], None]) -> Callable[[Any], None]:
    """``write`` fed sentence-transformers rows instead of clean triplets: ``anchor`` (the query
    in mghkit's query format, instruction inlined), ``positive`` and ``negative_1`` (high) ..
    ``negative_4`` (low) - the columns MultipleNegativesRankingLoss takes as they are."""

    def write_row(rec: dict[str, Any]) -> None:
        negatives = [n["text"] if isinstance(n, dict) else n.text for n in rec["hard_negative_examples"]]
        row = {"anchor": st_anchor(rec.get("instruction") or DEFAULT_INSTRUCTION, rec["query"]),
               "positive": rec["positive_example"]}  # fmt: skip
        row.update({f"negative_{i}": text for i, text in enumerate(negatives, 1)})
        write(row)

    return write_row
