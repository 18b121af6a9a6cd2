"""Stage 2 of MGH synthesis: for each task, a query, a positive and four graded hard negatives.

The pieces, each usable on its own from a notebook:

- :func:`plan` turns tasks into :class:`Job` s (one prompt each, attributes drawn from (seed, id));
- :func:`produce` asks the client, extracts and checks the JSON, re-asks once when it is
  unusable, and returns a triplet record (the :class:`~mghkit.schema.Triplet` file format) or a
  reject record - never nothing;
- :func:`agenerate` runs jobs with bounded concurrency and hands each result over as it arrives;
- :func:`run_generate` is what ``mghkit generate`` calls: check the task file (exit 2 before any
  call), resume by id from the output, append results as they come, progress and totals.

    >>> from mghkit.schema import Task
    >>> jobs = list(plan([Task(id="t1", kind="sts", task="Find paraphrases.")], per_task=2, seed=7))
    >>> [j.id for j in jobs]
    ['trip-8bc9c00cb916f807', 'trip-01d0a051da0610c7']
    >>> "Find paraphrases." in jobs[0].messages[0]["content"], jobs[0].attributes["difficulty"]
    (True, 'PhD')
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mghkit import __version__
from mghkit.errors import InputError, MghkitError, RuntimeFailure, UsageError
from mghkit.jsonl import JsonlWriter, display_name, dumps, iter_lines, loads, read_records, repair_tail
from mghkit.llm import LOCAL, BudgetExceeded, ClientConfig, Completion, LLMClient, LLMError, Messages, open_client
from mghkit.prompts import load_template
from mghkit.schema import KINDS, LEVELS, Task, Triplet, stable_id
from mghkit.synth.attributes import ATTRIBUTE_NAMES, attributes, request_seed
from mghkit.synth.extract import extract_json

MAX_TOKENS = 4096  # remote models: room for 6 texts of up to 500 words
LOCAL_MAX_TOKENS = 1024
TEMPERATURE = 1.0
LOCAL_TEMPERATURE = 0.5
LOCAL_MAX_QUERY, LOCAL_MAX_TEXT = 160, 300  # characters: keeps the 135M model from looping for long
MAX_TEXT_CHARS = 20_000  # a field longer than this is a runaway, not data
FAIL_STREAK = 5  # this many requests failing in a row (after their retries) stops the run
# Part of the name under which a finished record is kept in the cache (see ``replay_cached``):
# bump it whenever the way a record is built from the model's answers changes.
RECORD_FORMAT = f"mghkit {__version__} generate record 1"


# ----------------------------------------------------------------------------- prompts and jobs
class GeneratePrompt:
    """The generation template plus the per-kind rules, with one sha per kind."""

    def __init__(self) -> None:
        self.main = load_template("generate.txt")
        self.kinds = {kind: load_template(f"generate-{kind}.txt") for kind in KINDS}
        self.reask = load_template("reask.txt")
        self.sha = {
            kind: hashlib.sha256(f"{self.main.sha}+{t.sha}+{self.reask.sha}".encode()).hexdigest()[:16]
            for kind, t in self.kinds.items()
        }
        self.main.render(task="", query_desc="", doc_desc="", kind_rules="", **dict.fromkeys(ATTRIBUTE_NAMES, ""))
        self._format = self.main.text.format  # its variables are checked once, above

    def render(self, task: Task, attrs: dict[str, str]) -> str:
        return self._format(
            task=task.task.strip(),
            query_desc=(task.query_desc or "as the task says").strip().rstrip("."),
            doc_desc=(task.doc_desc or "as the task says").strip().rstrip("."),
            kind_rules=self.kinds[task.kind].text.strip(),
            **attrs,
        )


@dataclass
class Job:
    """One request to make: the triplet id it will produce and its prompt (rendered when first
    needed, so resuming a long run costs one hash per finished job)."""

    id: str
    task: Task
    index: int
    seed: int  # the run's seed (recorded); the request seed is derived from it and the id
    prompt: GeneratePrompt

    @functools.cached_property
    def attributes(self) -> dict[str, str]:
        return attributes(self.task.kind, self.seed, self.id)

    @functools.cached_property
    def messages(self) -> Messages:
        return [{"role": "user", "content": self.prompt.render(self.task, self.attributes)}]

    @property
    def prompt_sha(self) -> str:
        return self.prompt.sha[self.task.kind]

    def result_name(self, params: str) -> str:
        """Everything this job's record is built from, apart from the model's answers (which follow
        from these and the model): the cache name of the finished record."""
        t = self.task
        return "\x1f".join((RECORD_FORMAT, self.prompt_sha, str(self.seed), self.id, t.kind, t.task,
                             t.query_desc or "", t.doc_desc or "", params))  # fmt: skip


def triplet_id(task_id: str, index: int, seed: int) -> str:
    """The id of the ``index``-th triplet of a task: stable across reruns, so runs resume by id."""
    return stable_id(task_id, str(index), str(seed), prefix="trip-")


def plan(
    tasks: Iterable[Task], *, per_task: int = 1, seed: int = 0, prompt: GeneratePrompt | None = None
) -> Iterator[Job]:
    """``per_task`` jobs for each task, in task order."""
    prompt = prompt or GeneratePrompt()
    for task in tasks:
        for i in range(per_task):
            yield Job(triplet_id(task.id, i, seed), task, i, seed, prompt)


# ----------------------------------------------------------------------------- checking a reply
def check_triplet(obj: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The reply's object as a clean payload, or why it cannot be one. Trivial repairs: negatives
    given as plain strings are wrapped; labels are set by position (most similar first).

    >>> p, why = check_triplet({"query": "q", "positive_example": "p", "hard_negative_examples": ["a", "b", "c", "d"]})
    >>> [n["similarity_level"] for n in p["hard_negative_examples"]], why
    (['high', 'medium', 'medium-low', 'low'], None)
    >>> check_triplet({"query": "q", "positive_example": "p", "hard_negative_examples": ["a"]})
    (None, 'hard_negative_examples: expected 4 negatives, got 1')
    """
    if not isinstance(obj, dict):
        return None, "expected a JSON object"
    out: dict[str, Any] = {}
    for name in ("query", "positive_example"):
        value = obj.get(name)
        if value is None:
            return None, f"{name}: missing"
        if not isinstance(value, str) or not value.strip():
            return None, f"{name}: expected a non-empty string"
        if len(value) > MAX_TEXT_CHARS:
            return None, f"{name}: longer than {MAX_TEXT_CHARS:,} characters"
        out[name] = value.strip()
    negs = obj.get("hard_negative_examples")
    if negs is None:
        return None, "hard_negative_examples: missing"
    if not isinstance(negs, list):
        return None, "hard_negative_examples: expected a list"
    if len(negs) != len(LEVELS):
        return None, f"hard_negative_examples: expected {len(LEVELS)} negatives, got {len(negs)}"
    clean = []
    for i, neg in enumerate(negs):
        text = neg.get("text") if isinstance(neg, dict) else neg
        if not isinstance(text, str) or not text.strip():
            return None, f"hard_negative_examples.{i}.text: expected a non-empty string"
        if len(text) > MAX_TEXT_CHARS:
            return None, f"hard_negative_examples.{i}.text: longer than {MAX_TEXT_CHARS:,} characters"
        clean.append({"similarity_level": LEVELS[i], "text": text.strip()})
    out["hard_negative_examples"] = clean
    return out, None


def parse_triplet(text: str, finish_reason: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    obj, why = extract_json(text)
    if why is not None:
        if finish_reason == "length":
            why += " (the reply hit max_tokens)"
        return None, why
    return check_triplet(obj)


def triplet_schema(max_query: int = LOCAL_MAX_QUERY, max_text: int = LOCAL_MAX_TEXT) -> dict[str, Any]:
    """The JSON schema the embedded model is constrained to (bounded, so it cannot loop forever)."""
    text = {"type": "string", "minLength": 20, "maxLength": max_text}
    neg = {
        "type": "object",
        "properties": {"similarity_level": {"type": "string", "enum": list(LEVELS)}, "text": text},
        "required": ["similarity_level", "text"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 8, "maxLength": max_query},
            "positive_example": text,
            "hard_negative_examples": {"type": "array", "items": neg, "minItems": 4, "maxItems": 4},
        },
        "required": ["query", "positive_example", "hard_negative_examples"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class RequestParams:
    response_format: dict[str, Any]
    temperature: float
    max_tokens: int

    @classmethod
    def for_model(cls, model: str) -> RequestParams:
        if model == LOCAL:
            fmt = {"type": "json_schema", "json_schema": {"name": "triplet", "schema": triplet_schema()}}
            return cls(fmt, LOCAL_TEMPERATURE, LOCAL_MAX_TOKENS)
        return cls({"type": "json_object"}, TEMPERATURE, MAX_TOKENS)

    def key(self) -> str:
        """These parameters as canonical JSON (part of a record's cache name)."""
        return dumps(asdict(self))


# ----------------------------------------------------------------------------- one job
def _add_usage(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def produce(
    job: Job, client: LLMClient, params: RequestParams, reask: Any = None, first: Completion | None = None
) -> tuple[bool, dict[str, Any]]:
    """One job: (True, a triplet record) or (False, a reject record with raw text and reason, after
    one bounded re-ask). Transport failures raise :class:`~mghkit.llm.LLMError` (the job stays undone).
    ``first``: the first answer when already known (from the cache)."""
    kw = {"response_format": params.response_format, "seed": request_seed(job.seed, job.id),
          "temperature": params.temperature, "max_tokens": params.max_tokens}  # fmt: skip
    if first is None:
        first = await client.complete(job.messages, **kw)  # type: ignore[arg-type]
    payload, why = parse_triplet(first.text, first.finish_reason)
    usage, cost, reasked, second_text = dict(first.usage), first.cost_usd, False, None
    if why is not None:
        reask = reask or load_template("reask.txt")
        messages = [*job.messages, {"role": "assistant", "content": first.text[:6000]},
                    {"role": "user", "content": reask.render(reason=why)}]  # fmt: skip
        second = await client.complete(messages, **kw)  # type: ignore[arg-type]
        usage, cost, reasked, second_text = _add_usage(usage, second.usage), cost + second.cost_usd, True, second.text
        payload, why2 = parse_triplet(second.text, second.finish_reason)
        if why2 is not None:
            why = f"{why}; after one re-ask: {why2}"
    meta = _meta(job, client, usage, cost, reasked)
    if payload is None:
        return False, reject_record(job, str(why), raw=first.text, raw_reask=second_text, meta=meta)
    return True, make_triplet(job, payload, meta)


def _meta(job: Job, client: LLMClient, usage: dict[str, int], cost: float, reasked: bool) -> dict[str, Any]:
    return {"model": client.model, "prompt_sha": job.prompt_sha, "seed": job.seed, "usage": usage,
            "cost_usd": round(cost, 8), "attributes": job.attributes, "reasked": reasked}  # fmt: skip


def replay_cached(
    jobs: list[Job], client: LLMClient, params: RequestParams, on_record: Callable[[bool, dict[str, Any]], None],
    chunk: int = 1024,
) -> list[tuple[Job, Completion | None]]:  # fmt: skip
    """The warm-rerun fast path: hand over, without a request, every job whose result the client's
    cache already holds - a finished record kept by an earlier run, or else a cached first answer
    that is a valid triplet - with one batched lookup per ``chunk`` jobs. ``on_record(ok, record)``
    receives each. Returns the jobs left to run, each with its cached first answer when there was
    one (it still needs a re-ask), in order."""
    recall = getattr(client, "recall_results", None)
    lookup = getattr(client, "lookup_many", None)
    if recall is None or lookup is None:
        return [(job, None) for job in jobs]
    key = params.key()
    todo: list[tuple[Job, Completion | None]] = []
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        names = [job.result_name(key) for job in part]
        kept = recall(names)
        rest = []
        for job, name in zip(part, names, strict=True):
            value = kept.get(name)
            if value is None:
                rest.append((job, name))
            else:
                on_record(value[0] == "T", loads(value[1:]))
        hits = lookup([(job.messages, request_seed(job.seed, job.id)) for job, _ in rest],
                      response_format=params.response_format, temperature=params.temperature,
                      max_tokens=params.max_tokens)  # fmt: skip
        built = []
        for (job, name), hit in zip(rest, hits, strict=True):
            payload = None if hit is None else parse_triplet(hit.text, hit.finish_reason)[0]
            if hit is None or payload is None:
                todo.append((job, hit))
                continue
            record = make_triplet(job, payload, _meta(job, client, dict(hit.usage), hit.cost_usd, False))
            built.append((name, True, record))
            on_record(True, record)
        keep_results(client, built)
    return todo


def keep_results(client: LLMClient, done: list[tuple[str, bool, dict[str, Any]]]) -> None:
    """Keep finished records (result name, triplet or not, record) in the client's cache for
    ``replay_cached`` (when it has a cache)."""
    store = getattr(client, "store_results", None)
    if store is not None and done:
        store([(name, ("T" if ok else "R") + dumps(record)) for name, ok, record in done])


def make_triplet(job: Job, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The triplet record (the file format; ``Triplet.model_validate`` reads it) for a payload that
    :func:`check_triplet` has already checked - built as a plain dict because this is the hot path
    of a warm-cache rerun."""
    return {"id": job.id, "task_id": job.task.id, "kind": job.task.kind, "instruction": job.task.task.strip(),
            "query": payload["query"], "positive_example": payload["positive_example"],
            "hard_negative_examples": payload["hard_negative_examples"], "meta": meta}  # fmt: skip


def reject_record(
    job: Job, reason: str, *, raw: str, raw_reask: str | None = None, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": job.id, "task_id": job.task.id, "kind": job.task.kind, "reason": reason, "raw": raw}
    if raw_reask is not None:
        rec["raw_reask"] = raw_reask
    rec["meta"] = meta or {"model": None, "prompt_sha": job.prompt_sha, "seed": job.seed}
    return rec


# ----------------------------------------------------------------------------- many jobs
@dataclass
class GenerateStats:
    planned: int = 0
    resumed: int = 0  # already in the output (or rejects) before this run
    written: int = 0
    rejected: int = 0
    reasked: int = 0
    failed: int = 0
    last_failure: str = ""
    stop: MghkitError | None = None  # why the run stopped early, if it did
    reasons: dict[str, int] = field(default_factory=dict)


async def agenerate(
    jobs: Iterable[Job],
    client: LLMClient,
    *,
    concurrency: int = 8,
    on_triplet: Callable[[dict[str, Any]], None],
    on_reject: Callable[[dict[str, Any]], None],
    on_done: Callable[[], None] = lambda: None,
    stats: GenerateStats | None = None,
) -> GenerateStats:
    """Run jobs with at most ``concurrency`` requests in flight; records (triplets and rejects, as
    dicts in the file format) are handed over as they arrive.

    A request that fails for good (still failing after its retries, or refused by the provider,
    e.g. HTTP 400) is counted in ``stats.failed`` and left undone - not written as a reject, so a
    rerun tries it again once the cause is fixed. A budget stop, an auth error or FAIL_STREAK
    failures in a row stop new requests; those in flight still finish and are handed over."""
    stats = stats or GenerateStats()
    params = RequestParams.for_model(client.model)
    reask = load_template("reask.txt")
    key = params.key()

    def on_record(ok: bool, record: dict[str, Any]) -> None:
        if ok:
            stats.written += 1
            stats.reasked += bool(record["meta"].get("reasked"))
            on_triplet(record)
        else:
            stats.rejected += 1
            reason = record["reason"].split(":")[0][:60]
            stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
            on_reject(record)
        on_done()

    it = iter(replay_cached(list(jobs), client, params, on_record))
    streak = 0

    async def worker() -> None:
        nonlocal streak
        for job, first in it:
            if stats.stop is not None:
                return
            try:
                ok, result = await produce(job, client, params, reask, first)
            except BudgetExceeded as e:
                stats.stop = stats.stop or e
                return
            except LLMError as e:
                if e.kind == "fatal":
                    stats.stop = stats.stop or e
                    return
                else:
                    stats.failed += 1
                    stats.last_failure = str(e)
                    streak += 1
                    if streak >= FAIL_STREAK and stats.stop is None:
                        stats.stop = RuntimeFailure(f"stopped after {streak} requests in a row failed; last: {e}")
                    on_done()
                    continue
            streak = 0
            on_record(ok, result)
            keep_results(client, [(job.result_name(key), ok, result)])

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return stats


def generate(
    tasks: Iterable[Task], client: LLMClient, *, per_task: int = 1, seed: int = 0, concurrency: int = 8
) -> tuple[list[Triplet], list[dict[str, Any]]]:
    """Notebook entry point: all triplets (as :class:`Triplet`) and all rejects for ``tasks``."""
    records: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    jobs = list(plan(tasks, per_task=per_task, seed=seed))
    stats = asyncio.run(agenerate(jobs, client, concurrency=concurrency, on_triplet=records.append,
                                  on_reject=rejects.append))  # fmt: skip
    if stats.stop is not None:
        raise stats.stop
    return [Triplet.model_validate(r) for r in records], rejects


# ----------------------------------------------------------------------------- files and the CLI's call
def load_tasks(path: str | Path) -> list[Task]:
    """Every task of a file, checked before any call: a bad line, a duplicate id or an empty file is
    an InputError naming file:line:field (exit 2)."""
    name = display_name(path)
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, task in read_records(path, Task):
        if not task.task.strip():
            raise InputError("expected a non-empty task description", path=name, line=lineno, field="task")
        if task.id in seen:
            raise InputError(
                f"duplicate task id {task.id!r} (first on line {seen[task.id]})", path=name, line=lineno, field="id"
            )
        seen[task.id] = lineno
        tasks.append(task)
    if not tasks:
        raise InputError("no tasks (the file is empty)", path=name)
    return tasks


def done_ids(*paths: str | None) -> set[str]:
    """Ids already written to these JSONL files (a partial last line, as kill -9 leaves, is cut)."""
    ids: set[str] = set()
    for p in paths:
        if not p or p == "-" or not Path(p).is_file():
            continue
        repair_tail(p)
        for line in iter_lines(p):
            if line.obj is not None and isinstance(line.obj.get("id"), str):
                ids.add(line.obj["id"])
    return ids


def estimate_completion_tokens(attrs: dict[str, str]) -> int:
    """A rough size of one reply: six texts at the drawn lengths, ~1.4 tokens a word.

    >>> estimate_completion_tokens({"query_length": "less than 5 words long", "doc_length": "about 100 words long"})
    797
    """

    def words(s: str) -> int:
        nums = [int(n) for n in re.findall(r"\d+", s)]
        return max(nums) if nums else 20

    return int((words(attrs["query_length"]) + 5 * words(attrs["doc_length"])) * 1.4) + 90


@dataclass
class RunOptions:
    out: str = "-"
    rejects: str | None = None
    per_task: int = 1
    seed: int = 0
    concurrency: int = 8
    dry_run: bool = False
    progress: bool = True


def _check_options(opts: RunOptions) -> None:
    if opts.per_task < 1:
        raise UsageError("--per-task must be at least 1")
    if opts.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if opts.rejects and opts.rejects == opts.out and opts.out != "-":
        raise UsageError("--rejects must be a different file from --out")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_generate(tasks_path: str | Path, config: ClientConfig, opts: RunOptions) -> GenerateStats:
    """What ``mghkit generate`` does. Raises UsageError / InputError (exit 2) before any call, and
    a RuntimeFailure (exit 1) after writing everything that did arrive."""
    from mghkit.synth.report import RunProgress, usage_line

    _check_options(opts)
    tasks = load_tasks(tasks_path)  # a bad file stops here: exit 2, nothing sent, LiteLLM not even imported
    client = open_client(config, need_key=not opts.dry_run)
    jobs = list(plan(tasks, per_task=opts.per_task, seed=opts.seed))
    done = done_ids(opts.out, opts.rejects)
    pending = [j for j in jobs if j.id not in done]
    stats = GenerateStats(planned=len(jobs), resumed=len(jobs) - len(pending))
    if opts.dry_run:
        _dry_run(pending, client, stats, opts)
        return stats
    if config.max_budget is not None and not client.price_known:
        _say(f"generate: warning: no price for {client.model} in LiteLLM's table, so --max-budget cannot be enforced")
    if stats.resumed:
        _say(f"generate: resuming: {stats.resumed:,} of {len(jobs):,} already in {opts.out}"
             + (f" / {opts.rejects}" if opts.rejects else ""))  # fmt: skip
    try:
        with JsonlWriter(opts.out, mode="append") as out, _rejects_writer(opts.rejects) as rej:

            def on_reject(rec: dict[str, Any]) -> None:
                if rej is not None:
                    rej.write(rec)

            with RunProgress(len(pending), "generate", client, enabled=opts.progress) as bar:
                asyncio.run(agenerate(pending, client, concurrency=opts.concurrency, on_triplet=out.write,
                                      on_reject=on_reject, on_done=bar.advance, stats=stats))  # fmt: skip
    finally:
        client.close()
    _summary(stats, opts, len(pending))
    _say(usage_line(client.stats, client))
    if stats.stop is not None:
        raise stats.stop
    if stats.failed:
        raise RuntimeFailure(
            f"{stats.failed:,} of {len(pending):,} requests failed ({stats.last_failure}); "
            "rerun the same command to retry them"
        )
    return stats


class _NoWriter:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def _rejects_writer(path: str | None) -> Any:
    return JsonlWriter(path, mode="append") if path else _NoWriter()


def _summary(stats: GenerateStats, opts: RunOptions, pending: int) -> None:
    where = f" -> {opts.out}" if opts.out != "-" else ""
    parts = [f"generate: {stats.written:,} new triplets{where}"]
    if stats.resumed:
        parts.append(f"{stats.resumed:,} were already done")
    if stats.rejected:
        dest = f" -> {opts.rejects}" if opts.rejects else " (not kept: pass --rejects FILE to keep them)"
        top = ", ".join(f"{k} x{v}" for k, v in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:3])
        parts.append(f"{stats.rejected:,} rejected{dest} [{top}]")
    if stats.reasked:
        parts.append(f"{stats.reasked:,} needed a re-ask")
    left = pending - stats.written - stats.rejected
    if left:
        parts.append(f"{left:,} not done (rerun to finish)")
    _say("; ".join(parts))


def _dry_run(pending: list[Job], client: Any, stats: GenerateStats, opts: RunOptions) -> None:
    prompt_tokens = sum(client.count_tokens(j.messages) for j in pending)
    completion_tokens = sum(estimate_completion_tokens(j.attributes) for j in pending)
    line = (f"dry run: {len(pending):,} requests ({stats.planned:,} planned, {stats.resumed:,} already done); "
            f"about {prompt_tokens:,} prompt + {completion_tokens:,} completion tokens")  # fmt: skip
    if client.price_known:
        cost = client.estimate_cost(prompt_tokens, completion_tokens)
        line += (f"; estimated cost ${cost:.2f} at {client.model} prices (${client.price_in * 1e6:.2f} in / "
                 f"${client.price_out * 1e6:.2f} out per 1M tokens)")  # fmt: skip
    else:
        line += f"; cost unknown (no price for {client.model} in LiteLLM's table)"
    _say(line + "; no request was sent")
