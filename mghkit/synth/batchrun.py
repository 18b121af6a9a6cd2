"""Batch mode of generate (``--batch``): the same jobs, records, rejects and re-asks as online
mode, with the requests sent through the provider's batch API (:mod:`mghkit.llm.batch`) at the
batch price.

Each round runs every pending job through :func:`~mghkit.synth.triplets.produce` with a client
that answers from the response cache only (:class:`CacheOnly`); a job whose answer is missing
hands its request over instead. The round's requests go out as one batch job (or several, within
the provider's limits), their answers land in the response cache, and the next round picks them
up. Round 1 holds the first requests; round 2, much smaller, the re-asks; a round after that only
what a batch left unanswered (expired, cancelled, failed lines).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from mghkit.errors import UsageError
from mghkit.llm.base import BudgetExceeded, Completion, LLMClient, LLMError, Messages
from mghkit.llm.batch import MAX_ATTEMPTS, BatchLine, BatchProgress, BatchRunner
from mghkit.synth.replay import keep_results, replay_cached
from mghkit.synth.triplets import Job, RequestParams, produce

log = logging.getLogger(__name__)


class NeedAnswer(Exception):
    """A request whose answer is not in the cache yet: it goes into the next batch."""

    def __init__(self, key: str, body: dict[str, Any]) -> None:
        self.key, self.body = key, body


class CacheOnly:
    """What :func:`produce` sees in batch mode: the client's cached answers, :class:`NeedAnswer`
    for a missing one, an :class:`~mghkit.llm.LLMError` for one that failed for good."""

    def __init__(self, client: Any, failures: dict[str, str]) -> None:
        self.client, self.failures = client, failures
        self.model, self.stats, self.price_known = client.model, client.stats, client.price_known
        self.structured_output = getattr(client, "structured_output", False)

    async def complete(self, messages: Messages, **kw: Any) -> Completion:
        key, body = self.client.batch_request(messages, **kw)
        if key in self.failures:
            raise LLMError(self.failures[key], kind="request")
        hit = self.client.cache.get(key)
        if hit is None:
            raise NeedAnswer(key, body)
        return hit

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.client.estimate_cost(prompt_tokens, completion_tokens)


def check_batch_client(client: LLMClient) -> None:
    """Batch mode needs the real client (a LiteLLM model name), not a client object."""
    if not callable(getattr(client, "batch_request", None)):
        raise UsageError("--batch needs a LiteLLM model name (a client object has no batch API)")


async def run_batch_jobs(
    jobs: Sequence[Job],
    client: Any,
    runner: BatchRunner,
    *,
    record: Callable[[bool, dict[str, Any]], None],
    on_done: Callable[[], None],
    stats: Any,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> None:
    """Every job to a record through batch rounds; ``record(ok, rec)`` gets each record,
    ``stats`` (a GenerateStats) counts failures and a budget stop."""
    params = RequestParams.for_client(client, max_tokens=max_tokens, temperature=temperature)
    key = params.key()
    todo = replay_cached(list(jobs), client, params, record)
    runner.ledger.retry_failed(client.model)  # a rerun tries again what failed for good, as online mode does
    failures: dict[str, str] = {}
    for _ in range(3 * MAX_ATTEMPTS):  # first asks, re-asks, and what batches left unanswered
        lines: dict[str, BatchLine] = {}
        waiting = []
        cache_only = CacheOnly(client, failures)
        for job, first in todo:
            try:
                ok, result = await produce(job, cache_only, params, first=first)
            except NeedAnswer as e:
                lines[e.key] = BatchLine.of(e.key, e.body)
                waiting.append((job, None))
                continue
            except LLMError as e:
                stats.failed += 1
                stats.last_failure, stats.last_failure_refused = str(e), False
                on_done()
                continue
            keep_results(client, [(job.result_name(key), ok, result)])
            record(ok, result)
        if not lines:
            return
        # failed for good: the next round counts their jobs as failed
        failures.update(await batch_round(client, runner, lines, params.max_tokens))
        todo = waiting
    for _job, _ in todo:
        stats.failed += 1
        stats.last_failure = "no answer after several batch submissions"
        on_done()


async def batch_round(client: Any, runner: BatchRunner, lines: dict[str, BatchLine], max_tokens: int) -> dict[str, str]:
    """Get these requests answered into the cache: those a live batch already holds (an earlier,
    interrupted run's) are waited for, the others submitted. Returns those that failed for good."""
    ids = list(lines)
    states = runner.ledger.request_states(ids)
    fresh = [bl for cid, bl in lines.items() if states.get(cid, ("new",))[0] not in ("pending", "failed")]
    check_budget(client, runner, fresh, max_tokens)
    await runner.resume_planned()  # a submission a killed run recorded but did not create
    if fresh:
        await runner.submit(fresh)
    await runner.wait(ids)
    return runner.failures(ids)


class BatchingClient:
    """A client whose ``complete`` is answered through batch jobs: the requests made together
    (within ``debounce`` seconds of each other) go out as one batch round - what brainstorm's
    rounds of calls need. Cached answers come back at once (and count as cache hits)."""

    def __init__(self, client: Any, runner: BatchRunner, *, max_tokens: int, debounce: float = 0.05) -> None:
        self.client, self.runner, self.max_tokens, self.debounce = client, runner, max_tokens, debounce
        self.model, self.stats, self.price_known = client.model, client.stats, client.price_known
        self.structured_output = getattr(client, "structured_output", False)
        self.failures: dict[str, str] = {}
        self._waiting: dict[str, tuple[BatchLine, list[Any]]] = {}
        self._flusher: Any = None
        runner.ledger.retry_failed(client.model)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.client.estimate_cost(prompt_tokens, completion_tokens)

    async def complete(self, messages: Messages, **kw: Any) -> Completion:
        import asyncio

        key, body = self.client.batch_request(messages, **kw)
        for _ in range(3 * MAX_ATTEMPTS):
            if key in self.failures:
                raise LLMError(self.failures[key], kind="request")
            hit = self.client.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return hit
            future = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(key, (BatchLine.of(key, body), []))[1].append(future)
            if self._flusher is None:
                self._flusher = asyncio.ensure_future(self._flush())
            await future
        raise LLMError("no answer after several batch submissions", kind="request")

    async def _flush(self) -> None:
        import asyncio

        n = -1
        while n != len(self._waiting):  # until no new request came in for `debounce` seconds
            n = len(self._waiting)
            await asyncio.sleep(self.debounce)
        waiting, self._waiting, self._flusher = self._waiting, {}, None
        try:
            self.failures.update(await batch_round(self.client, self.runner, {k: v[0] for k, v in waiting.items()},
                                                   self.max_tokens))  # fmt: skip
        except BaseException as e:
            for _, futures in waiting.values():
                for f in futures:
                    f.set_exception(e)
            return
        for _, futures in waiting.values():
            for f in futures:
                f.set_result(None)


def check_budget(client: Any, runner: BatchRunner, lines: Sequence[BatchLine], max_tokens: int) -> None:
    """Refuse a submission whose worst-case cost (at the batch price) could cross --max-budget."""
    budget = client.config.max_budget
    if budget is None or not client.price_known or not lines:
        return
    worst = sum(runner.cost(len(bl.line) // 4 + 8, max_tokens) for bl in lines)
    if client.stats.cost_usd + worst > budget:
        raise BudgetExceeded(f"--max-budget ${budget:.2f}: the batch of {len(lines):,} requests could cost up to "
                             f"${worst:.4f} (${client.stats.cost_usd:.4f} already spent); nothing was submitted")  # fmt: skip


def batch_plan(
    client: Any, requests: Sequence[tuple[Messages, dict[str, Any]]], batch_size: int | None
) -> tuple[int, int, tuple[float | None, float | None]]:
    """A dry run's batch plan: (files, bytes, (price in, price out) per token at the batch price)."""
    from mghkit.llm.batch import PROVIDER_LIMITS, Limits, batch_prices, batch_targets, check_batch_size, split_requests

    targets = batch_targets(client, keys=False)
    limits = Limits(min(PROVIDER_LIMITS[t.provider].requests for t in targets),
                    min(PROVIDER_LIMITS[t.provider].bytes for t in targets))  # fmt: skip
    size = check_batch_size(batch_size, limits)
    lines = [BatchLine.of(*client.batch_request(m, **kw)) for m, kw in requests]
    files = split_requests(lines, Limits(size, limits.bytes))
    p_in, p_out, _ = batch_prices(client)
    return len(files), sum(len(bl.line) for bl in lines), (p_in, p_out)


def progress_printer(bar: Any) -> Callable[[BatchProgress], None]:
    """An ``on_progress`` for :class:`BatchRunner` that drives a :class:`~mghkit.synth.report.BatchBar`."""
    return bar.update
