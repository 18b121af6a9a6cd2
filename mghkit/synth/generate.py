"""Stage 2 of MGH synthesis (docs/method.md section 1): for each task, a query, a positive and
four graded hard negatives - :func:`generate` / :func:`agenerate`, what ``mghkit generate`` calls.

Tasks go in as records (:class:`~mghkit.schema.Task` or dicts) or a JSONL path; triplets and
rejects come back as typed records, and stream to ``out`` / ``rejects`` files when given (appended
as they arrive; a rerun resumes by id and, with the cache, pays for nothing twice). Any object
with an async ``complete`` can stand in for the model:

    >>> from mghkit.llm import ScriptedClient
    >>> reply = ('{"query": "Latin name of sodium", "positive_example": "Sodium is natrium.", '
    ...          '"hard_negative_examples": ["Potassium is kalium.", "b", "c", "d"]}')
    >>> triplets, rejects = generate([{"kind": "sts", "task": "Find facts."}], model=ScriptedClient(lambda m: reply))
    >>> triplets[0].query, triplets[0].negative("high"), rejects
    ('Latin name of sodium', 'Potassium is kalium.', [])

The pieces: :mod:`mghkit.synth.triplets` (one job: prompt, parse, check, re-ask),
:mod:`mghkit.synth.replay` (the warm-cache fast path) and :func:`run_jobs` (many jobs, bounded
concurrency) below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.aio import run_sync
from mghkit.errors import InputError, MghkitError, RuntimeFailure, UsageError
from mghkit.jsonl import (
    JsonlWriter,
    check_distinct_outputs,
    display_name,
    is_special,
    iter_lines,
    parse_record,
    read_records,
)
from mghkit.llm.base import BudgetExceeded, LLMClient, LLMError, check_sampling
from mghkit.llm.batch import BatchRunner, check_batch
from mghkit.llm.client import as_client
from mghkit.schema import Reject, Task, Triplet
from mghkit.synth.batchrun import batch_plan, check_batch_client, run_batch_jobs
from mghkit.synth.replay import keep_results, replay_cached
from mghkit.synth.report import BatchBar, Estimate, RunProgress, Usage, count_tokens, estimate, warn_if_unpriced
from mghkit.synth.triplets import Job, RequestParams, estimate_completion_tokens, plan, produce

log = logging.getLogger(__name__)

FAIL_STREAK = 5  # this many requests failing in a row (after their retries) stops the run


@dataclass
class GenerateStats:
    planned: int = 0
    resumed: int = 0  # already in the output (or rejects) before this run
    written: int = 0
    rejected: int = 0
    reasked: int = 0
    failed: int = 0  # requests that failed for good: left undone, a rerun retries them
    last_failure: str = ""
    last_failure_refused: bool = False  # the server refused the request (e.g. too long): a plain rerun will not help
    stop: MghkitError | None = None  # why the run stopped early, if it did
    reasons: dict[str, int] = field(default_factory=dict)  # reject code -> count
    usage: Usage = field(default_factory=Usage)
    estimate: Estimate | None = None  # a dry run's forecast (nothing was sent)

    @property
    def pending(self) -> int:
        """Jobs this run had to do."""
        return self.planned - self.resumed

    @property
    def undone(self) -> int:
        """Jobs this run left undone (a rerun finishes them)."""
        return 0 if self.estimate else self.pending - self.written - self.rejected

    @property
    def error(self) -> MghkitError | None:
        """Why this run did not finish its jobs, or None."""
        if self.stop is not None:
            return self.stop
        if self.failed:
            then = "fix that, then rerun" if self.last_failure_refused else "rerun"
            return RuntimeFailure(f"{self.failed:,} of {self.pending:,} requests failed ({self.last_failure}); "
                                  f"{then} the same command to retry them")  # fmt: skip
        return None


@dataclass
class GenerateResult:
    """What :func:`generate` made in this run; unpacks as ``triplets, rejects``."""

    triplets: list[Triplet]
    rejects: list[Reject]
    stats: GenerateStats

    def __iter__(self) -> Iterator[Any]:
        return iter((self.triplets, self.rejects))

    def check(self) -> GenerateResult:
        """Raise the run's error (a budget or failure stop, failed requests), if any."""
        if self.stats.error is not None:
            raise self.stats.error
        return self


# ----------------------------------------------------------------------------- many jobs
def recorder(
    stats: GenerateStats, on_record: Callable[[bool, dict[str, Any]], None], on_done: Callable[[], None]
) -> Callable[[bool, dict[str, Any]], None]:
    """``record(ok, rec)``: count a finished record in ``stats``, hand it over, advance the bar."""

    def record(ok: bool, rec: dict[str, Any]) -> None:
        if ok:
            stats.written += 1
            stats.reasked += bool(rec["meta"].get("reasked"))
        else:
            stats.rejected += 1
            code = rec["reasons"][0]["code"]
            stats.reasons[code] = stats.reasons.get(code, 0) + 1
        on_record(ok, rec)
        on_done()

    return record


async def run_jobs(
    jobs: Iterable[Job],
    client: LLMClient,
    *,
    concurrency: int = 8,
    on_record: Callable[[bool, dict[str, Any]], None],
    on_done: Callable[[], None] = lambda: None,
    stats: GenerateStats | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> GenerateStats:
    """Run jobs with at most ``concurrency`` requests in flight; each record is handed over as it
    arrives, as ``on_record(True, triplet)`` or ``on_record(False, reject)`` (dicts in the file
    formats), then ``on_done()``.

    A request that fails for good (still failing after its retries, or refused by the provider,
    e.g. HTTP 400) is counted in ``stats.failed`` and left undone - not written as a reject, so a
    rerun tries it again once the cause is fixed. A budget stop, an auth error or FAIL_STREAK
    failures in a row stop new requests; those in flight still finish and are handed over.

    An error of ``on_record`` (a full disk, a closed stdout) or any other unexpected one stops
    new requests too; those in flight finish (their answers land in the client's cache, so a
    rerun does not pay for them again) but nothing more is handed over, then the first such error
    is raised. No request is ever left dangling (no task is cancelled behind the caller's back)."""
    stats = stats or GenerateStats()
    params = RequestParams.for_client(client, max_tokens=max_tokens, temperature=temperature)
    key = params.key()
    record = recorder(stats, on_record, on_done)
    it = iter(replay_cached(list(jobs), client, params, record))
    streak = 0
    errors: list[Exception] = []  # what went wrong on our side (first one raised at the end)

    async def worker() -> None:
        nonlocal streak
        for job, first in it:
            if stats.stop is not None or errors:
                return
            try:
                ok, result = await produce(job, client, params, first=first)
            except BudgetExceeded as e:
                stats.stop = stats.stop or e
                return
            except LLMError as e:
                if e.kind == "fatal":
                    stats.stop = stats.stop or e
                    return
                stats.failed += 1
                stats.last_failure = str(e)
                stats.last_failure_refused = e.kind == "request"
                streak += 1
                if streak >= FAIL_STREAK and stats.stop is None:
                    stats.stop = RuntimeFailure(f"stopped after {streak} requests in a row failed; last: {e}")
                on_done()
                continue
            except Exception as e:  # unexpected: stop, let the others finish what is in flight
                errors.append(e)
                return
            streak = 0
            keep_results(client, [(job.result_name(key), ok, result)])  # first: a failed write loses nothing
            if errors:  # an output already failed: the answer is in the cache, write nothing more
                return
            try:
                record(ok, result)
            except Exception as e:  # a full disk, a closed stdout
                errors.append(e)
                return

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if errors:
        raise errors[0]
    return stats


# ----------------------------------------------------------------------------- tasks in, resume
def load_tasks(path: str | Path) -> list[Task]:
    """Every task of a JSONL file, checked before any call: a bad line, a duplicate id or an empty
    file is an InputError naming file:line:field (exit 2)."""
    return _checked(read_records(path, Task), display_name(path))


def as_tasks(tasks: Iterable[Task | dict[str, Any]] | str | Path) -> list[Task]:
    """Tasks from records (Task objects or dicts) or a JSONL path, checked as :func:`load_tasks`.

    >>> [t.kind for t in as_tasks([{"kind": "sts", "task": "Find paraphrases."}])]
    ['sts']
    """
    if isinstance(tasks, str | Path):
        return load_tasks(tasks)
    name = "<tasks>"

    def records() -> Iterator[tuple[int, Task]]:
        for i, t in enumerate(tasks, 1):
            if isinstance(t, Task):
                yield i, t
            elif isinstance(t, dict):
                yield i, parse_record(t, Task, path=name, line=i)
            else:
                raise InputError(f"expected a Task or a dict, got {type(t).__name__}", path=name, line=i)

    return _checked(records(), name)


def _checked(records: Iterable[tuple[int, Task]], name: str) -> list[Task]:
    out: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, task in records:
        if not task.task.strip():
            raise InputError("expected a non-empty task description", path=name, line=lineno, field="task")
        if task.id in seen:
            raise InputError(
                f"duplicate task id {task.id!r} (first on line {seen[task.id]})", path=name, line=lineno, field="id"
            )
        seen[task.id] = lineno
        out.append(task)
    if not out:
        raise InputError("no tasks (the file is empty)" if name != "<tasks>" else "no tasks", path=name)
    return out


def done_ids(*paths: str | Path | None) -> set[str]:
    """Ids already written to these JSONL files, read without changing them: a broken line (the
    partial last one a kill -9 leaves) counts as not done. ``-``, a device or a FIFO
    (``/dev/stdout``, ``/dev/null``) is never read back: nothing is done there yet."""
    ids: set[str] = set()
    for p in paths:
        if not p or is_special(p) or not Path(p).is_file():
            continue
        for line in iter_lines(p):
            if line.obj is not None and isinstance(line.obj.get("id"), str):
                ids.add(line.obj["id"])
    return ids


# ----------------------------------------------------------------------------- the public functions
async def agenerate(
    tasks: Iterable[Task | dict[str, Any]] | str | Path,
    model: str | LLMClient = "gpt-4o",
    *,
    out: str | Path | None = None,
    rejects: str | Path | None = None,
    per_task: int = 1,
    seed: int = 0,
    concurrency: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    max_budget: float | None = None,
    dry_run: bool = False,
    api_base: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    extra_body: dict[str, Any] | None = None,
    max_retries: int = 5,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    collect: bool = True,
    check: bool = True,
    batch: bool = False,
    batch_size: int | None = None,
    poll_interval: float = 30.0,
    deployments: str | Path | None = None,
) -> GenerateResult:
    """The async form of :func:`generate` (same arguments, same result)."""
    if per_task < 1:
        raise UsageError("--per-task must be at least 1")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    check_sampling(max_tokens, temperature)
    source = tasks if isinstance(tasks, str | Path) else "-"
    check_distinct_outputs(source, out=out, rejects=rejects)
    task_list = as_tasks(tasks)  # a bad file stops here: nothing sent, LiteLLM not even imported
    # a dry run sends nothing and changes nothing: no cache is opened (nor created)
    client, owned = as_client(model, need_key=not dry_run, api_base=api_base, api_key_env=api_key_env,
                              timeout=timeout, max_retries=max_retries, rpm=rpm, tpm=tpm, max_budget=max_budget,
                              extra_body=extra_body, deployments=deployments,
                              cache_dir=cache_dir, use_cache=not dry_run)  # fmt: skip
    triplets: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    try:
        if batch:
            check_batch_client(client)
            check_batch(client, batch_size, keys=not dry_run)  # a model without a batch API: exit 2, nothing sent
        jobs = list(plan(task_list, per_task=per_task, seed=seed))
        if dry_run:  # read the outputs as they are: no lock, no repair
            pending, stats = _resume(jobs, out, rejects)
            prompt_tokens = sum(count_tokens(client, j.messages) for j in pending)
            completion_tokens = sum(estimate_completion_tokens(j.attributes) for j in pending)
            stats.estimate = estimate(client, len(pending), prompt_tokens, completion_tokens)
            if batch:
                params = RequestParams.for_client(client, max_tokens=max_tokens, temperature=temperature)
                kw = {"response_format": params.response_format, "temperature": params.temperature,
                      "max_tokens": params.max_tokens}  # fmt: skip
                files, size, prices = batch_plan(client, [(j.messages, {**kw, "seed": j.request_seed}) for j in pending],
                                                 batch_size)  # fmt: skip
                stats.estimate.batch_files, stats.estimate.batch_bytes = files, size
                if client.price_known:
                    stats.estimate.price_in, stats.estimate.price_out = prices
            return GenerateResult([], [], stats)
        warn_if_unpriced("generate", client, max_budget)
        # the outputs are locked (a second run on them stops here, exit 2, naming this one) and a
        # partial last line repaired before the ids already done are read from them
        with _appender(out) as out_w, _appender(rejects) as rej_w:
            pending, stats = _resume(jobs, out, rejects)
            if stats.resumed:
                log.info("generate: resuming: %s of %s already in %s%s", f"{stats.resumed:,}", f"{len(jobs):,}",
                         out, f" / {rejects}" if rejects else "")  # fmt: skip

            def on_record(ok: bool, rec: dict[str, Any]) -> None:
                writer = out_w if ok else rej_w
                if writer is not None:
                    writer.write(rec)
                if collect:
                    (triplets if ok else rejected).append(rec)

            if batch:
                with BatchBar(len(pending), "generate --batch", client, enabled=progress) as bar:
                    runner = BatchRunner(client, batch_size=batch_size, poll_interval=poll_interval,
                                         on_progress=bar.update)  # fmt: skip
                    try:
                        await run_batch_jobs(pending, client, runner, record=recorder(stats, on_record, bar.advance),
                                             on_done=bar.advance, stats=stats, max_tokens=max_tokens,
                                             temperature=temperature)  # fmt: skip
                    except BudgetExceeded as e:
                        stats.stop = e
                    finally:
                        runner.close()
            else:
                with RunProgress(len(pending), "generate", client, enabled=progress) as bar:
                    await run_jobs(pending, client, concurrency=concurrency, on_record=on_record, on_done=bar.advance,
                                   stats=stats, max_tokens=max_tokens, temperature=temperature)  # fmt: skip
    finally:
        if owned:
            client.close()  # type: ignore[attr-defined]
    stats.usage = Usage.of(client)
    order = {job.id: i for i, job in enumerate(jobs)}  # plan order, whatever order they arrived in
    result = GenerateResult(
        [Triplet.model_validate(r) for r in sorted(triplets, key=lambda r: order[r["id"]])],
        [Reject.model_validate(r) for r in sorted(rejected, key=lambda r: order[r["id"]])],
        stats,
    )
    return result.check() if check else result


def generate(
    tasks: Iterable[Task | dict[str, Any]] | str | Path,
    model: str | LLMClient = "gpt-4o",
    *,
    out: str | Path | None = None,
    rejects: str | Path | None = None,
    per_task: int = 1,
    seed: int = 0,
    concurrency: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    max_budget: float | None = None,
    dry_run: bool = False,
    api_base: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    extra_body: dict[str, Any] | None = None,
    max_retries: int = 5,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    collect: bool = True,
    check: bool = True,
    batch: bool = False,
    batch_size: int | None = None,
    poll_interval: float = 30.0,
    deployments: str | Path | None = None,
) -> GenerateResult:
    """``per_task`` graded triplets for each task; unpacks as ``triplets, rejects``.

    ``model``: a LiteLLM model name (``gpt-4o``, ``openai/NAME`` with ``api_base``, ...),
    ``"local"`` for the embedded offline LLM, or an LLM client object. The other options are the
    CLI's (``mghkit generate --help``). ``out`` / ``rejects``: JSONL files the records are appended
    to as they arrive; ids already in them count as done (resume), and only this run's records
    are returned. ``collect=False``: return no records (a run too large to hold in memory).
    ``dry_run``: send nothing; ``result.stats.estimate`` forecasts tokens and cost.
    ``check=False``: return a stopped or partly failed run instead of raising its error
    (``result.stats.error``; ``result.check()`` raises it).

    Works inside a running event loop too (Jupyter); there, ``await agenerate(...)`` also does.
    """
    return run_sync(agenerate(tasks, model, out=out, rejects=rejects, per_task=per_task, seed=seed,
                              concurrency=concurrency, rpm=rpm, tpm=tpm, max_budget=max_budget, dry_run=dry_run,
                              api_base=api_base, api_key_env=api_key_env, timeout=timeout, max_tokens=max_tokens, temperature=temperature, extra_body=extra_body,
                                max_retries=max_retries,
                              cache_dir=cache_dir, progress=progress, collect=collect, check=check,
                              batch=batch, batch_size=batch_size, poll_interval=poll_interval, deployments=deployments))  # fmt: skip


def _resume(jobs: list[Job], out: str | Path | None, rejects: str | Path | None) -> tuple[list[Job], GenerateStats]:
    """The jobs not yet done in ``out`` / ``rejects``, and the stats that start from them."""
    done = done_ids(out, rejects)
    pending = [j for j in jobs if j.id not in done]
    return pending, GenerateStats(planned=len(jobs), resumed=len(jobs) - len(pending))


def _appender(path: str | Path | None) -> contextlib.AbstractContextManager[JsonlWriter | None]:
    return JsonlWriter(path, mode="append") if path else contextlib.nullcontext(None)
