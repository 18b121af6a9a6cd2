"""Stage 1 of MGH synthesis (docs/method.md section 1): an LLM brainstorms text-matching tasks of
the five kinds - :func:`brainstorm` / :func:`abrainstorm`, what ``mghkit brainstorm`` calls.

Each call asks for ``per_call`` tasks of one kind, leaning toward a domain drawn from (seed, call
id) for diversity; near-duplicate tasks (same content words, whatever the order or phrasing
details) are removed; calls continue until each kind has its share or a bounded number of calls
is spent. The order of the output is deterministic for a seed (calls are read in call order).

    >>> from mghkit.llm import ScriptedClient
    >>> client = ScriptedClient(lambda m: '{"tasks": [{"task": "Given a symptom, retrieve articles on its causes"}]}')
    >>> tasks = brainstorm(client, n_tasks=1, kinds="short-long", per_call=1)
    >>> [(t.kind, t.task) for t in tasks], tasks.stats.calls
    ([('short-long', 'Given a symptom, retrieve articles on its causes')], 1)
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.aio import run_sync
from mghkit.errors import MghkitError, RuntimeFailure, UsageError
from mghkit.jsonl import JsonlWriter
from mghkit.llm.base import LOCAL, Completion, LLMClient, check_sampling
from mghkit.llm.batch import BatchRunner, batch_prices, check_batch
from mghkit.llm.client import as_client
from mghkit.prompts import load_template
from mghkit.schema import KINDS, Task
from mghkit.synth.attributes import draw, request_seed
from mghkit.synth.batchrun import BatchingClient, check_batch_client
from mghkit.synth.report import Estimate, RunProgress, Usage, count_tokens, estimate, warn_if_unpriced
from mghkit.synth.tasks import (
    LOCAL_MAX_TOKENS,
    LOCAL_TEMPERATURE,
    MAX_PER_CALL,
    MAX_TOKENS,
    TEMPERATURE,
    NearDupIndex,
    parse_kinds,
    parse_tasks,
    quotas,
    tasks_schema,
)


@dataclass
class BrainstormStats:
    calls: int = 0
    unusable_replies: int = 0
    bad_items: int = 0
    duplicates: int = 0
    made: dict[str, int] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)
    first_problem: str = ""
    stop: MghkitError | None = None  # why the run stopped early (the tasks made are kept)
    usage: Usage = field(default_factory=Usage)
    estimate: Estimate | None = None  # a dry run's forecast (nothing was sent)

    @property
    def shortfall(self) -> int:
        return sum(self.wanted.values()) - sum(self.made.values())


class Brainstormed(list[Task]):
    """The tasks :func:`brainstorm` made (a list), with the run's ``stats``."""

    def __init__(self, tasks: Sequence[Task] = (), stats: BrainstormStats | None = None) -> None:
        super().__init__(tasks)
        self.stats = stats or BrainstormStats()

    def check(self) -> Brainstormed:
        """Raise the error that stopped the run early, if any."""
        if self.stats.stop is not None:
            raise self.stats.stop
        return self


async def run_calls(
    client: LLMClient,
    *,
    n_tasks: int,
    kinds: Sequence[str] = KINDS,
    per_call: int = 5,
    seed: int = 0,
    concurrency: int = 4,
    on_task: Callable[[Task], None],
    max_calls_factor: int = 3,
    stats: BrainstormStats | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> BrainstormStats:
    """Brainstorm ``n_tasks`` tasks over ``kinds``; each new task is handed to ``on_task`` in a
    deterministic order. Transport errors propagate after the tasks already made are handed over."""
    templates = {k: load_template(f"brainstorm-{k}.txt") for k in kinds}
    domains_t = load_template("brainstorm-domains.txt")
    domains = [d.strip() for d in domains_t.text.splitlines() if d.strip()]
    sha = {k: hashlib.sha256(f"{t.sha}+{domains_t.sha}".encode()).hexdigest()[:16] for k, t in templates.items()}
    local = client.model == LOCAL
    structured = local or getattr(client, "structured_output", False)  # the embedded model, a self-hosted server
    fmt = ({"type": "json_schema", "json_schema": {"name": "tasks", "schema": tasks_schema(per_call)}} if structured
           else {"type": "json_object"})  # fmt: skip
    if temperature is None:
        temperature = LOCAL_TEMPERATURE if local else TEMPERATURE
    if max_tokens is None:
        max_tokens = LOCAL_MAX_TOKENS if local else MAX_TOKENS
    kw: dict[str, Any] = {"response_format": fmt, "temperature": temperature, "max_tokens": max_tokens}
    need = quotas(n_tasks, kinds)
    stats = stats or BrainstormStats()
    stats.made, stats.wanted = dict.fromkeys(kinds, 0), dict(need)
    max_calls = {k: max_calls_factor * math.ceil(q / per_call) + 2 for k, q in need.items()}
    calls = dict.fromkeys(kinds, 0)
    seen = NearDupIndex()
    sem = asyncio.Semaphore(max(1, concurrency))

    async def call(kind: str, i: int) -> Completion:
        call_id = f"{kind}:{i}"
        domain = draw(seed, call_id, "domain", domains)
        messages = [{"role": "user", "content": templates[kind].render(n=per_call, domain=domain)}]
        async with sem:
            return await client.complete(messages, seed=request_seed(seed, call_id), **kw)

    while True:
        batch = []
        for k in kinds:
            if need[k] > 0 and calls[k] < max_calls[k]:
                for _ in range(min(math.ceil(need[k] / per_call), max_calls[k] - calls[k])):
                    batch.append((k, calls[k]))
                    calls[k] += 1
        if not batch:
            break
        results = await asyncio.gather(*(call(k, i) for k, i in batch), return_exceptions=True)
        error: BaseException | None = None
        for (kind, i), res in zip(batch, results, strict=True):
            if isinstance(res, BaseException):
                error = error or res
                continue
            stats.calls += 1
            items, bad, why = parse_tasks(res.text)
            stats.bad_items += bad
            if why is not None:
                stats.unusable_replies += 1
                stats.first_problem = stats.first_problem or why
                continue
            share = max(1, len(items))
            usage = {k: v // share for k, v in res.usage.items()}
            for item in items:
                if need[kind] <= 0:
                    break
                if not seen.add(item["task"]):
                    stats.duplicates += 1
                    continue
                meta = {"model": client.model, "prompt_sha": sha[kind], "seed": seed, "call": i,
                        "usage": usage, "cost_usd": round(res.cost_usd / share, 8)}  # fmt: skip
                on_task(Task(kind=kind, meta=meta, **item))  # type: ignore[arg-type]
                need[kind] -= 1
                stats.made[kind] += 1
        if error is not None:
            raise error
    return stats


def _nothing_made(stats: BrainstormStats, out: str | Path | None) -> str:
    """Why a run that made no task at all failed, in one line.

    >>> _nothing_made(BrainstormStats(calls=3, unusable_replies=3, first_problem="not JSON"), "t.jsonl")
    'brainstorm: no usable task in 3 replies (3 unusable: not JSON); nothing written, t.jsonl left as it was; try another --model or --seed'
    """
    if stats.unusable_replies:
        why = f"{stats.unusable_replies} unusable: {stats.first_problem}"
    elif stats.bad_items:
        why = f"{stats.bad_items} items without a task description"
    else:
        why = "every task was a near-duplicate"
    kept = f", {out} left as it was" if out and str(out) != "-" else ""
    return (f"brainstorm: no usable task in {stats.calls} replies ({why}); nothing written{kept}; "
            "try another --model or --seed")  # fmt: skip


def _estimate(client: LLMClient, kinds: list[str], n_tasks: int, per_call: int) -> Estimate:
    need = quotas(n_tasks, kinds)
    n_calls = sum(math.ceil(q / per_call) for q in need.values())
    per_prompt = {k: count_tokens(client, [{"role": "user", "content": load_template(f"brainstorm-{k}.txt").text}])
                  for k in kinds}  # fmt: skip
    prompt_tokens = sum(per_prompt[k] * math.ceil(q / per_call) for k, q in need.items())
    return estimate(client, n_calls, prompt_tokens, n_calls * (per_call * 70 + 20))


async def abrainstorm(
    model: str | LLMClient = "gpt-4o",
    *,
    n_tasks: int = 40,
    kinds: str | Sequence[str] = KINDS,
    per_call: int = 5,
    seed: int = 0,
    out: str | Path | None = None,
    concurrency: int = 4,
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
    check: bool = True,
    batch: bool = False,
    batch_size: int | None = None,
    poll_interval: float = 30.0,
    deployments: str | Path | None = None,
) -> Brainstormed:
    """The async form of :func:`brainstorm` (same arguments, same result)."""
    kind_list = parse_kinds(kinds)
    if n_tasks < 1:
        raise UsageError("--n-tasks must be at least 1")
    if not 1 <= per_call <= MAX_PER_CALL:
        raise UsageError(f"--per-call must be between 1 and {MAX_PER_CALL}")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    check_sampling(max_tokens, temperature)
    # a dry run sends nothing and changes nothing: no cache is opened (nor created)
    client, owned = as_client(model, need_key=not dry_run, api_base=api_base, api_key_env=api_key_env,
                              timeout=timeout, max_retries=max_retries, rpm=rpm, tpm=tpm, max_budget=max_budget,
                              extra_body=extra_body, deployments=deployments,
                              cache_dir=cache_dir, use_cache=not dry_run)  # fmt: skip
    result = Brainstormed()
    runner = None
    try:
        if batch:
            check_batch_client(client)
            check_batch(client, batch_size, keys=not dry_run)  # a model without a batch API: exit 2, nothing sent
        if dry_run:
            result.stats.estimate = _estimate(client, kind_list, n_tasks, per_call)
            if batch and client.price_known:
                p_in, p_out, _ = batch_prices(client)
                result.stats.estimate.price_in, result.stats.estimate.price_out = p_in, p_out
            return result
        calls_client: LLMClient = client
        if batch:
            runner = BatchRunner(client, batch_size=batch_size, poll_interval=poll_interval)
            calls_client = BatchingClient(client, runner, max_tokens=max_tokens or MAX_TOKENS)
            concurrency = 1_000_000  # every call of a round goes into that round's batch
        warn_if_unpriced("brainstorm", client, max_budget)
        # opened first: a locked output or a read-only folder stops the run before any request;
        # written atomically, so a failed run (a full disk, no task at all) leaves --out as it was
        # - the answers it paid for are in the response cache, and a rerun gets them for free
        writer = JsonlWriter(out) if out else None
        made = False
        try:
            with RunProgress(n_tasks, "brainstorm", client, enabled=progress) as bar:

                def on_task(task: Task) -> None:
                    if writer is not None:
                        writer.write(task)
                    result.append(task)
                    bar.advance()

                try:
                    await run_calls(calls_client, n_tasks=n_tasks, kinds=kind_list, per_call=per_call, seed=seed,
                                    concurrency=concurrency, on_task=on_task, stats=result.stats,
                                    max_tokens=max_tokens, temperature=temperature)  # fmt: skip
                except MghkitError as e:  # keep what was made (a budget or network stop), then report
                    result.stats.stop = e
            made = bool(result)
            if not made and result.stats.stop is None:
                result.stats.stop = RuntimeFailure(_nothing_made(result.stats, out))
        finally:
            if writer is not None:
                writer.close(ok=made)  # no task: nothing written, an existing --out untouched
    finally:
        if runner is not None:
            runner.close()
        if owned:
            client.close()  # type: ignore[attr-defined]
    result.stats.usage = Usage.of(client)
    return result.check() if check else result


def brainstorm(
    model: str | LLMClient = "gpt-4o",
    *,
    n_tasks: int = 40,
    kinds: str | Sequence[str] = KINDS,
    per_call: int = 5,
    seed: int = 0,
    out: str | Path | None = None,
    concurrency: int = 4,
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
    check: bool = True,
    batch: bool = False,
    batch_size: int | None = None,
    poll_interval: float = 30.0,
    deployments: str | Path | None = None,
) -> Brainstormed:
    """``n_tasks`` tasks split evenly over ``kinds`` (a list of :class:`~mghkit.schema.Task` with
    the run's ``.stats``; fewer when the model keeps repeating itself: ``.stats.shortfall``; none
    at all is an error, a RuntimeFailure saying why).

    ``model``: a LiteLLM model name, ``"local"`` for the embedded offline LLM, or an LLM client
    object. The other options are the CLI's (``mghkit brainstorm --help``). ``out``: a JSONL file
    the tasks are written to (atomically: a run that fails or makes no task leaves it as it was).
    ``dry_run``: send nothing; ``.stats.estimate`` forecasts calls, tokens and cost.
    ``check=False``: return the tasks made before a budget or network stop instead of raising it
    (``.stats.stop``; ``.check()`` raises it).

    Works inside a running event loop too (Jupyter); there, ``await abrainstorm(...)`` also does.
    """
    return run_sync(abrainstorm(model, n_tasks=n_tasks, kinds=kinds, per_call=per_call, seed=seed, out=out,
                                concurrency=concurrency, rpm=rpm, tpm=tpm, max_budget=max_budget, dry_run=dry_run,
                                api_base=api_base, api_key_env=api_key_env, timeout=timeout, max_tokens=max_tokens, temperature=temperature, extra_body=extra_body,
                                max_retries=max_retries,
                                cache_dir=cache_dir, progress=progress, check=check, batch=batch,
                                batch_size=batch_size, poll_interval=poll_interval, deployments=deployments))  # fmt: skip
