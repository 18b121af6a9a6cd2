"""Provider batch APIs (half the list price, answers within 24 h) through LiteLLM's files and
batches calls - reached through :func:`mghkit.llm.client.litellm_module`, the one LiteLLM import.

A batch request is exactly the request :meth:`LiteLLMClient.complete` would send; its
``custom_id`` is that request's response-cache key, so a batch answer lands in the response cache
where an online answer would, and everything downstream (records, re-asks, warm reruns) is the
online code. :class:`BatchRunner` takes the requests whose answers are missing and:

1. records them in the ledger (``batches.sqlite3`` in the cache dir) as a planned submission -
   committed before anything is uploaded;
2. uploads the request file(s) and creates the batch(es), each tagged with its submission id in
   the batch's ``metadata``, then records the batch id. A rerun after a kill between the two
   finds the batch by that tag (``list_batches``) instead of submitting it again: no request is
   billed twice;
3. polls until every batch is done (``on_progress`` hears the status counts), downloads the
   output and error files, puts each answer into the response cache (with its cost at the batch
   price) and only then marks it answered - a kill at any moment loses no answer;
4. resubmits what an expired, cancelled or failed batch left unanswered, and lines that failed
   (up to ``max_attempts`` submissions each; then the request fails for good, as an online one
   does after its retries).

    >>> split_requests([BatchLine("a", b"x" * 10), BatchLine("b", b"y" * 10)], Limits(1, 100))
    [['a'], ['b']]
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mghkit.errors import UsageError
from mghkit.hashing import stable_id
from mghkit.llm.base import Completion, LLMError
from mghkit.llm.ledger import ENDPOINT, BatchLine, Ledger
from mghkit.llm.limits import backoff_delay

log = logging.getLogger(__name__)

LIVE = ("validating", "in_progress", "finalizing", "cancelling")  # a batch still working
MAX_ATTEMPTS = 3  # submissions of one request before it fails for good


@dataclass(frozen=True)
class Limits:
    """A provider's limits on one batch input file."""

    requests: int
    bytes: int


# what LiteLLM's create_batch can reach with OpenAI-format request files, and each one's file limits
PROVIDER_LIMITS = {
    "openai": Limits(50_000, 200 * 1024**2),
    "azure": Limits(100_000, 200 * 1024**2),
    "mistral": Limits(1_000_000, 200 * 1024**2),
    "hosted_vllm": Limits(50_000, 200 * 1024**2),
    "litellm_proxy": Limits(50_000, 200 * 1024**2),
}


def batch_provider(model: str) -> str:
    """The LiteLLM provider of ``model`` if it takes batch jobs, else a one-line UsageError.

    >>> batch_provider("openai/my-model")
    'openai'
    >>> batch_provider("local")
    Traceback (most recent call last):
    mghkit.errors.UsageError: --batch: local has no batch API; batch mode needs one of azure, hosted_vllm, litellm_proxy, mistral, openai (or drop --batch)
    """
    provider = model.split("/", 1)[0] if "/" in model else None
    if provider is None and model != "local":
        from mghkit.llm.client import litellm_module

        try:
            provider = litellm_module().get_llm_provider(model)[1]
        except Exception:
            provider = None
    if provider not in PROVIDER_LIMITS:
        names = ", ".join(sorted(PROVIDER_LIMITS))
        raise UsageError(f"--batch: {model} has no batch API; batch mode needs one of {names} (or drop --batch)")
    return provider


def check_batch_size(batch_size: int | None, limits: Limits) -> int:
    """Requests per batch file: ``batch_size`` when within the provider's limit, else UsageError."""
    if batch_size is None:
        return limits.requests
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if batch_size > limits.requests:
        raise UsageError(f"--batch-size {batch_size:,} is over the provider's limit of {limits.requests:,} "
                         "requests per batch file")  # fmt: skip
    return batch_size


def split_requests(lines: Sequence[BatchLine], limits: Limits) -> list[list[str]]:
    """Request files within the limits (count and bytes), as lists of custom_ids. A single line over
    the byte limit is a UsageError (exit 2) - before anything is submitted."""
    files: list[list[str]] = []
    size = 0
    for bl in lines:
        if len(bl.line) > limits.bytes:
            raise UsageError(f"--batch: one request is {len(bl.line):,} bytes, over the provider's batch file limit "
                             f"of {limits.bytes:,} bytes; use online mode (drop --batch)")  # fmt: skip
        if not files or len(files[-1]) >= limits.requests or size + len(bl.line) > limits.bytes:
            files.append([])
            size = 0
        files[-1].append(bl.custom_id)
        size += len(bl.line)
    return files


def batch_prices(client: Any) -> tuple[float | None, float | None, float | None]:
    """USD per token at the batch price: (input, output, cached input). From LiteLLM's table
    (``input_cost_per_token_batches``...); where it has none, half the list price (what OpenAI,
    Anthropic, Gemini and Mistral charge). Cached input: the cache-read price, halved too (the two
    discounts stack at Anthropic; an assumption elsewhere).

    >>> from types import SimpleNamespace
    >>> batch_prices(SimpleNamespace(model="openai/unknown-x", price_in=2e-6, price_out=8e-6, price_cached=None))
    (1e-06, 4e-06, 1e-06)
    """
    from mghkit.llm.client import model_price

    def half(p: float | None) -> float | None:
        return None if p is None else p / 2

    m = client.model
    p_in = model_price(m, "input_cost_per_token_batches") or half(client.price_in)
    p_out = model_price(m, "output_cost_per_token_batches") or half(client.price_out)
    cached = getattr(client, "price_cached", None)
    return p_in, p_out, half(cached) if cached is not None else p_in


@dataclass(frozen=True)
class Target:
    """Where a batch goes: a provider endpoint with its key (held in memory only)."""

    label: str
    provider: str
    body_model: str | None  # the model named in each line's body, when not the client's own
    api_base: str | None
    key: str | None = None

    def __repr__(self) -> str:  # never the key
        return f"Target({self.label})"


def batch_targets(client: Any, *, keys: bool = True) -> list[Target]:
    """The endpoints batches of ``client`` go to: its deployments (``--deployments``), each of
    which must take batch jobs, or its one model; a one-line UsageError otherwise."""
    deployments = getattr(client, "deployments", None)
    if deployments is None:
        provider = batch_provider(client.model)
        return [Target(client.model, provider, None, client.config.api_base, getattr(client, "_key", None))]
    out = []
    for d in deployments.group(client.model):
        provider = batch_provider(d.model)
        body_model = d.model.split("/", 1)[1] if "/" in d.model else d.model
        out.append(Target(d.label, provider, body_model, d.api_base, d.key() if keys else None))
    return out


def check_batch(client: Any, batch_size: int | None, *, keys: bool = True) -> list[Target]:
    """Everything --batch needs, checked before anything is sent: the model (or each deployment)
    takes batch jobs, --batch-size is within the providers' limits, the keys are set."""
    targets = batch_targets(client, keys=keys)
    check_batch_size(batch_size, Limits(min(PROVIDER_LIMITS[t.provider].requests for t in targets), 0))
    return targets


# ----------------------------------------------------------------------------- the runner
@dataclass
class BatchProgress:
    """What the runner reports while it waits: batches by status, requests answered of total."""

    queued: int = 0
    in_progress: int = 0
    done: int = 0
    answered: int = 0
    total: int = 0


class BatchRunner:
    """Gets answers for requests through the provider's batch API into ``client``'s response cache.
    ``client``: a :class:`~mghkit.llm.client.LiteLLMClient` with a cache."""

    def __init__(
        self,
        client: Any,
        *,
        batch_size: int | None = None,
        poll_interval: float = 30.0,
        on_progress: Callable[[BatchProgress], None] = lambda p: None,
    ) -> None:
        if client.cache is None:
            raise UsageError("--batch needs the response cache (it is where batch answers land)")
        self.client = client
        self.targets = batch_targets(client)
        self.limits = Limits(min(PROVIDER_LIMITS[t.provider].requests for t in self.targets),
                             min(PROVIDER_LIMITS[t.provider].bytes for t in self.targets))  # fmt: skip
        self.batch_size = check_batch_size(batch_size, self.limits)
        self.poll_interval = poll_interval
        self.on_progress = on_progress
        self.ledger = Ledger(client.cache.path.parent)
        self.price_in, self.price_out, self.price_cached = batch_prices(client)

    # -- prices and the plan
    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        if not self.client.price_known:
            return 0.0
        return (
            (prompt - cached) * (self.price_in or 0)
            + cached * (self.price_cached or 0)
            + completion * (self.price_out or 0)
        )

    def plan(self, lines: Sequence[BatchLine]) -> list[list[str]]:
        return split_requests(lines, Limits(self.batch_size, self.limits.bytes))

    def failures(self, ids: Sequence[str]) -> dict[str, str]:
        """custom_id -> error, for requests that failed for good."""
        return {c: e or "failed" for c, (s, _, _, e) in self.ledger.request_states(ids).items() if s == "failed"}

    # -- the API calls, retried like online requests
    def target(self, label: str | None) -> Target:
        return next((t for t in self.targets if t.label == label), self.targets[0])

    async def _api(self, name: str, target: Target, **kw: Any) -> Any:
        from mghkit.llm.client import litellm_module
        from mghkit.llm.failures import classify, first_line, scrub

        cfg = self.client.config
        kw.update(custom_llm_provider=target.provider, timeout=cfg.request_timeout)
        if target.api_base:
            kw["api_base"] = target.api_base
        if target.key:
            kw["api_key"] = target.key
        elif target.api_base:
            kw["api_key"] = "no-key"
        attempt = 0
        while True:
            try:
                return await getattr(litellm_module(), name)(**kw)
            except Exception as e:
                kind, status = classify(e)
                if kind == "retry" and attempt < cfg.max_retries:
                    await asyncio.sleep(backoff_delay(attempt, base=cfg.backoff_base, cap=cfg.backoff_max, jitter=0.75))
                    attempt += 1
                    self.client.stats.retries += 1
                    continue
                if kind == "unknown":
                    raise
                raise LLMError(f"batch API ({name}, {target.label}): " + scrub(first_line(str(e)), target.key),
                               status=status, kind="fatal" if kind != "request" else "request") from None  # fmt: skip

    # -- submitting
    async def submit(self, lines: Sequence[BatchLine]) -> None:
        """Record, upload and create batches for these requests (already planned ones are adopted)."""
        by_id = {bl.custom_id: bl for bl in lines}
        start = len(self.ledger.submissions("model=?", (self.client.model,)))
        for i, ids in enumerate(self.plan(lines)):  # the deployments take the files in turn
            sub = stable_id(self.client.model, *ids, str(time.time()), prefix="sub-")
            target = self.targets[(start + i) % len(self.targets)]
            self.ledger.plan(sub, self.client.model, target.label, target.api_base, [by_id[c] for c in ids])
        await self.resume_planned()

    async def resume_planned(self) -> None:
        """Create the batch of every planned submission of this model - unless the provider already
        has it (a kill after creating it, before its id was recorded)."""
        planned = self.ledger.submissions("state='planned' AND model=?", (self.client.model,))
        if not planned:
            return
        known: dict[str, dict[str, str]] = {}
        for s in planned:
            t = self.target(s["target"])
            if t.label not in known:
                known[t.label] = await self._tagged_batches(t)
            batch_id = known[t.label].get(s["sub"])
            if batch_id is None:
                lines = self.ledger.lines_of(s["sub"])
                data = b"".join(bl.line if t.body_model is None else _with_model(bl.line, t.body_model) for bl in lines)
                f = await self._api("acreate_file", t, file=(f"mghkit-{s['sub']}.jsonl", data), purpose="batch")
                b = await self._api("acreate_batch", t, completion_window="24h", endpoint=ENDPOINT,
                                    input_file_id=f.id, metadata={"mghkit_submission": s["sub"]})  # fmt: skip
                batch_id = b.id
            else:
                log.info("batch: %s was already submitted as %s: not submitted again", s["sub"], batch_id)
            self.ledger.set_submission(s["sub"], state="submitted", batch_id=batch_id, status="validating")

    async def _tagged_batches(self, target: Target) -> dict[str, str]:
        """submission id -> batch id, for the provider's batches that carry our tag."""
        found: dict[str, str] = {}
        after = None
        for _ in range(20):  # the newest 2,000 batches are plenty: a planned one is minutes old
            page = await self._api("alist_batches", target, limit=100, **({"after": after} if after else {}))
            data = list(getattr(page, "data", None) or [])
            for b in data:
                sub = (getattr(b, "metadata", None) or {}).get("mghkit_submission")
                if sub:
                    found.setdefault(sub, b.id)
            if not data or not getattr(page, "has_more", False):
                break
            after = data[-1].id
        return found

    # -- waiting and collecting
    async def wait(self, ids: Sequence[str]) -> None:
        """Poll the submissions holding these requests until each has ended; collect their answers."""
        wanted = set(ids)
        while True:
            states = self.ledger.request_states(list(wanted))
            subs = {sub for (state, _, sub, _) in states.values() if state == "pending" and sub}
            live = [s for s in self.ledger.submissions("state='submitted'") if s["sub"] in subs]
            progress = BatchProgress(total=len(wanted))
            progress.answered = sum(1 for s in states.values() if s[0] in ("answered", "failed"))
            if not live:
                self.on_progress(progress)
                return
            for s in live:
                b = await self._api("aretrieve_batch", self.target(s["target"]), batch_id=s["batch_id"])
                if b.status in LIVE:
                    self.ledger.set_submission(s["sub"], status=b.status)
                    progress.in_progress += b.status != "validating"
                    progress.queued += b.status == "validating"
                else:
                    answered = await self._collect(s["sub"], b, self.target(s["target"]))
                    progress.done += 1
                    progress.answered += answered
            self.on_progress(progress)
            if any(s for s in self.ledger.submissions("state='submitted'") if s["sub"] in subs):
                await asyncio.sleep(self.poll_interval)

    async def _collect(self, sub: str, batch: Any, target: Target) -> int:
        answers: list[tuple[str, Completion]] = []
        errors: dict[str, str] = {}
        mine = {bl.custom_id for bl in self.ledger.lines_of(sub)}
        if batch.output_file_id:
            for rec in await self._lines(batch.output_file_id, target):
                cid, resp = rec.get("custom_id"), rec.get("response") or {}
                if cid not in mine:
                    continue
                if resp.get("status_code") == 200 and isinstance(resp.get("body"), dict):
                    c = self._completion(resp["body"])
                    if c is not None:
                        answers.append((cid, c))
                        continue
                errors[cid] = _line_error(rec)
        self.client.cache.put_many(answers)  # first the answers, then the ledger
        answered = [cid for cid, _ in answers]
        if batch.error_file_id:
            for rec in await self._lines(batch.error_file_id, target):
                if rec.get("custom_id") in mine:
                    errors[rec["custom_id"]] = _line_error(rec)
        if batch.status != "completed":
            why = getattr(batch, "errors", None)
            detail = "; ".join(str(getattr(e, "message", e)) for e in (getattr(why, "data", None) or [])[:2])
            log.warning("batch %s ended %s%s: %d answered; the rest is resubmitted", batch.id, batch.status,
                        f" ({detail})" if detail else "", len(answered))  # fmt: skip
        self.ledger.settle(sub, answered, errors, batch.status, MAX_ATTEMPTS)
        return len(answered)

    async def _lines(self, file_id: str, target: Target) -> list[dict[str, Any]]:
        content = await self._api("afile_content", target, file_id=file_id)
        out = []
        for raw in content.content.splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def _completion(self, body: dict[str, Any]) -> Completion | None:
        choices = body.get("choices") or []
        if not choices:
            return None
        u = body.get("usage") or {}
        cached = int(((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        usage = {
            "prompt_tokens": int(u.get("prompt_tokens") or 0),
            "completion_tokens": int(u.get("completion_tokens") or 0),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if cached:
            usage["cached_tokens"] = cached
        cost = self.cost(usage["prompt_tokens"], usage["completion_tokens"], cached)
        st = self.client.stats
        st.requests += 1
        st.prompt_tokens += usage["prompt_tokens"]
        st.completion_tokens += usage["completion_tokens"]
        st.cached_tokens += cached
        st.cost_usd += cost
        msg = choices[0].get("message") or {}
        return Completion(msg.get("content") or "", usage, cost, False, choices[0].get("finish_reason"))

    def close(self) -> None:
        self.ledger.close()


def _with_model(line: bytes, model: str) -> bytes:
    rec = json.loads(line)
    rec["body"]["model"] = model
    return (json.dumps(rec, separators=(",", ":")) + "\n").encode()


def _line_error(rec: dict[str, Any]) -> str:
    err = rec.get("error") or ((rec.get("response") or {}).get("body") or {}).get("error") or {}
    status = (rec.get("response") or {}).get("status_code")
    message = err.get("message") if isinstance(err, dict) else str(err)
    return f"batch line failed (HTTP {status}): {message or 'no answer'}"
