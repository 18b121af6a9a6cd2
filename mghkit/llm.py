"""The one door to LLMs: the only module that imports LiteLLM.

The synthesis steps see a small protocol, :class:`LLMClient` (``await client.complete(messages)``
-> :class:`Completion`), so a notebook or a test can hand them anything that answers. The real
client, :class:`LiteLLMClient`, adds what a long paid run needs:

- retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections,
  honouring ``Retry-After`` (LiteLLM's and the OpenAI SDK's own retries are switched off, so
  every attempt is ours and counted);
- ``--rpm`` / ``--tpm`` limits (token buckets, refilled continuously);
- a content-addressed response cache on disk (sqlite; key = sha256 of model, messages,
  parameters and seed - never the API key or the server address), so a rerun re-bills nothing;
- cost from LiteLLM's price table (unknown or local models: 0, flagged "price unknown") and a
  budget that refuses a request whose worst-case cost would cross ``--max-budget``;
- API keys read from the environment, passed to LiteLLM in memory, scrubbed from error text.

``model="local"`` is the embedded SmolLM2-135M-Instruct (see :mod:`mghkit.local_llm`), reached
through LiteLLM as a custom provider (``mghkit-local/...``) rather than a local HTTP server: no
port, no child process to orphan on ``kill -9``, no web-server dependencies, and the same retry,
cache and cost path as every other model.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mghkit.errors import RuntimeFailure, UsageError
from mghkit.jsonl import loads
from mghkit.paths import cache_dir

_litellm: Any = None


def _lib() -> Any:
    """LiteLLM, imported on first use (2-3 s), configured to stay offline and quiet."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import
        # its pydantic models warn about ReadOnly TypedDict items at import and on first use
        warnings.filterwarnings("ignore", message=".*ReadOnly.*", category=UserWarning)
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        # Not litellm.drop_params: with it, an HTTP 422 is retried inside LiteLLM, unseen and uncounted.
        # Unsupported parameters are dropped here instead (see _supported_params).
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
        # LiteLLM's import leaves ~370k objects that every full garbage collection walks again
        # (~0.25 s each, several per thousand requests); they live as long as the process, so
        # move them out of the collector's sight.
        gc.collect()
        gc.freeze()
        _litellm = litellm
    return _litellm


LOCAL = "local"
LOCAL_PROVIDER = "mghkit-local"
CACHE_FILE = "llm-cache.sqlite3"
Messages = list[dict[str, str]]


# ----------------------------------------------------------------------------- the protocol
@dataclass
class Completion:
    """One model answer: its text, the provider's token usage, and what it cost."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    cached: bool = False
    finish_reason: str | None = None


@dataclass
class ClientStats:
    """What a client did in this run (cache hits cost nothing and are not requests)."""

    requests: int = 0  # HTTP (or local) calls attempted, retries included
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # spent in this run (cache hits excluded)


class LLMClient(Protocol):
    """What the synthesis steps need from an LLM."""

    model: str
    stats: ClientStats
    price_known: bool

    async def complete(
        self,
        messages: Messages,
        *,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion: ...

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float: ...


# ----------------------------------------------------------------------------- errors
class LLMError(RuntimeFailure):
    """A request failed for good. ``kind``: "retry" (still failing after the retries: the server or
    the network), "request" (the provider refused this request, e.g. 400: retrying cannot help),
    "fatal" (authentication or an unknown model: no point sending more requests)."""

    def __init__(self, message: str, *, status: int | None = None, kind: str = "retry") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class BudgetExceeded(RuntimeFailure):
    """The next request could cross --max-budget; nothing more is sent."""


# ----------------------------------------------------------------------------- configuration
@dataclass
class ClientConfig:
    model: str = "gpt-4o"
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float = 120.0
    max_retries: int = 5
    rpm: float | None = None
    tpm: float | None = None
    max_budget: float | None = None
    cache_dir: str | Path | None = None
    use_cache: bool = True
    backoff_base: float = 1.0  # seconds before the first retry (doubled each time, jittered)
    backoff_max: float = 60.0
    retry_after_max: float = 120.0


def resolve_api_key(model: str, api_base: str | None, api_key_env: str | None) -> str | None:
    """The API key for ``model`` from the environment, or a clear one-line UsageError.

    With ``--api-base`` and no ``--api-key-env`` no provider key is sent (a local server needs
    none, and an OPENAI_API_KEY must not leak to an arbitrary address).
    """
    if model == LOCAL:
        return None
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise UsageError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
        return key
    if api_base:
        return "no-key"  # the OpenAI SDK insists on some key; a local server ignores it
    try:
        env = _lib().validate_environment(model)
    except Exception:  # an unknown provider: let the call itself report it
        return None
    missing = [k for k in env.get("missing_keys", []) if "KEY" in k or "TOKEN" in k]
    if missing:
        raise UsageError(
            f"{model} needs {missing[0]} in the environment (or --api-key-env NAME); "
            "for the offline embedded model use --model local"
        )
    return None


# ----------------------------------------------------------------------------- the cache
class ResponseCache:
    """A content-addressed store of completions: sqlite in WAL mode, safe across processes and
    ``kill -9`` (a committed answer survives, a half-written one never appears)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # finished results built from cached completions (e.g. generate's records), keyed by everything
        # they were built from: a warm rerun reads them back instead of re-rendering and re-parsing
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    @staticmethod
    def key(model: str, messages: Messages, params: dict[str, Any]) -> str:
        """sha256 over canonical JSON of (model, params) and each message's role and content, each
        length-prefixed (unambiguous, and cheaper than JSON-encoding long prompts).

        >>> ResponseCache.key("m", [{"role": "user", "content": "ab"}], {}) != ResponseCache.key(
        ...     "m", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {})
        True
        """
        h = hashlib.sha256(json.dumps([model, params], sort_keys=True).encode("utf-8"))
        _hash_messages(h, messages)
        return h.hexdigest()

    @staticmethod
    def seeded_keys(model: str, params: dict[str, Any], requests: Sequence[tuple[Messages, int]]) -> list[str]:
        """``key(model, messages, {**params, "seed": seed})`` for many (messages, seed) pairs, the
        parameters' JSON built once and the seed spliced in (a warm rerun's hot path).

        >>> p = {"temperature": 1.0, "response_format": {"type": "json_object"}}
        >>> m = [{"role": "user", "content": "hi"}]
        >>> ResponseCache.seeded_keys("x", p, [(m, 42)]) == [ResponseCache.key("x", m, {**p, "seed": 42})]
        True
        """
        mark = "7777777777777777"  # a seed no request uses (seeds are 31-bit)
        left, found, right = json.dumps([model, {**params, "seed": int(mark)}], sort_keys=True).partition(mark)
        if not found or mark in right:  # cannot splice: the plain way
            return [ResponseCache.key(model, m, {**params, "seed": s}) for m, s in requests]
        head = hashlib.sha256(left.encode("utf-8"))
        keys = []
        for messages, seed in requests:
            h = head.copy()
            h.update(f"{seed}{right}".encode())
            _hash_messages(h, messages)
            keys.append(h.hexdigest())
        return keys

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached completions among ``keys`` (a batched lookup)."""
        return {key: _decode(value) for key, value in self._select("completions", keys)}

    def _select(self, table: str, keys: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(key, value) of the rows of ``table`` among ``keys``, in chunks under SQLite's limit on
        bound parameters."""
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            yield from self._db.execute(f"SELECT key, value FROM {table} WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk)  # fmt: skip

    def put(self, key: str, c: Completion) -> None:
        value = {"text": c.text, "usage": c.usage, "cost_usd": c.cost_usd, "finish_reason": c.finish_reason}
        self._db.execute("INSERT OR REPLACE INTO completions VALUES (?, ?)", (key, json.dumps(value)))

    def get_results(self, keys: Sequence[str]) -> dict[str, str]:
        return dict(self._select("results", keys))

    def put_results(self, items: Sequence[tuple[str, str]]) -> None:
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", items)

    def close(self) -> None:
        self._db.close()


def _hash_messages(h: Any, messages: Messages) -> None:
    """Feed each message's role and content to ``h``, length-prefixed (unambiguous)."""
    for m in messages:
        for part in (m.get("role") or "", m.get("content") or ""):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)


def _decode(value: str) -> Completion:
    v = loads(value)
    return Completion(v["text"], v["usage"], v["cost_usd"], True, v.get("finish_reason"))


# ----------------------------------------------------------------------------- rate limits
class TokenBucket:
    """Continuously refilled bucket: ``rate`` units per second, holding at most ``capacity``.
    A take larger than the capacity waits for a full bucket and leaves a debt."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)  # at most one second's worth in a burst
        self.level = self.capacity
        self.t = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    async def take(self, n: float) -> None:
        while True:
            self._refill()
            need = min(n, self.capacity)
            if self.level >= need:
                self.level -= n
                return
            await asyncio.sleep((need - self.level) / self.rate)

    def give_back(self, n: float) -> None:
        """Correct an estimate afterwards (n may be negative: more was used than reserved)."""
        self._refill()
        self.level = min(self.capacity, self.level + n)


# ----------------------------------------------------------------------------- the real client
_RETRY_STATUS = {408, 409, 425, 429}
_FATAL_STATUS = {401, 403, 404}


def _scrub(text: str, secret: str | None) -> str:
    """Remove an API key (and anything shaped like one) from text meant for a human.

    >>> _scrub("bad key sk-abcdef123456 for x", None)
    'bad key sk-*** for x'
    """
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return re.sub(r"\b(sk|key|tok)-[A-Za-z0-9_\-*]{6,}", r"\1-***", text)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date).

    >>> retry_after_seconds({"retry-after": "2"})
    2.0
    >>> retry_after_seconds({"retry-after-ms": "150"})
    0.15
    """
    if not headers:
        return None
    get = headers.get
    ms = get("retry-after-ms") or get("Retry-After-Ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = get("retry-after") or get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class EmptyResponse(Exception):
    """A 200 answer with no choices in it: the server's fault, retried like a 5xx."""


def _classify(e: Exception) -> tuple[str, int | None]:
    """('retry' | 'fatal' | 'request' | 'unknown', status) for an exception from a call."""
    litellm = _lib()
    status = getattr(e, "status_code", None)
    if isinstance(e, litellm.Timeout | litellm.APIConnectionError | asyncio.TimeoutError | EmptyResponse):
        return "retry", status
    if isinstance(status, int):
        if status in _RETRY_STATUS or status >= 500:
            return "retry", status
        if status in _FATAL_STATUS:
            return "fatal", status
        return "request", status
    if isinstance(e, litellm.exceptions.APIError | litellm.exceptions.OpenAIError):
        return "retry", status
    return "unknown", status


def _first_line(text: str, n: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[:n] + "..."


class LiteLLMClient:
    """The real client. Create it with :func:`open_client` (which checks the key at once)."""

    def __init__(self, config: ClientConfig, *, api_key: str | None = None) -> None:
        self.config = config
        self.model = config.model
        self.stats = ClientStats()
        self._key = api_key
        if config.model == LOCAL:
            from mghkit import local_llm

            register_local_provider()
            self._litellm_model = f"{LOCAL_PROVIDER}/{local_llm.MODEL_NAME}"
            self._cache_model = f"{LOCAL}:{local_llm.MODEL_FILE}"
        else:
            self._litellm_model = config.model
            self._cache_model = config.model
        self.price_in, self.price_out = _prices(self._litellm_model) if config.model != LOCAL else (None, None)
        self.price_known = self.price_in is not None
        self._supported = _supported_params(self._litellm_model) if config.model != LOCAL else None
        self.cache = ResponseCache(cache_dir(config.cache_dir) / CACHE_FILE) if config.use_cache else None
        self._rpm = TokenBucket(config.rpm) if config.rpm else None
        self._tpm = TokenBucket(config.tpm) if config.tpm else None
        self._reserved = 0.0  # worst-case cost of requests in flight
        self._rng = random.Random(os.urandom(8))  # jitter only: never affects results

    # -- money
    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        if not self.price_known:
            return 0.0
        return prompt_tokens * (self.price_in or 0.0) + completion_tokens * (self.price_out or 0.0)

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens by the model's tokenizer where LiteLLM knows it (else ~4 characters a token)."""
        try:
            return int(_lib().token_counter(model=self._litellm_model, messages=messages))
        except Exception:
            return sum(len(m.get("content") or "") for m in messages) // 4 + 4

    # -- the one public call
    async def complete(
        self,
        messages: Messages,
        *,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        params = _params(response_format=response_format, seed=seed, temperature=temperature, max_tokens=max_tokens)
        key = ResponseCache.key(self._cache_model, messages, params) if self.cache else ""
        if self.cache:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return hit
        est_prompt = sum(len(m.get("content") or "") for m in messages) // 4 + 8
        worst = self.estimate_cost(est_prompt, max_tokens or 4096)
        self._check_budget(worst)
        self._reserved += worst
        try:
            result = await self._call_with_retries(messages, params, est_prompt + (max_tokens or 1024))
        finally:
            self._reserved -= worst
        if self.cache:
            self.cache.put(key, result)
        return result

    def lookup_many(
        self,
        requests: Sequence[tuple[Messages, int]],
        *,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> list[Completion | None]:
        """The cached answers of many ``complete(messages, seed=seed, ...)`` calls, without calling
        anything: one batched cache lookup (a warm rerun resolves its records here). Hits count
        as cache hits; a None is a request still to make."""
        if not self.cache:
            return [None] * len(requests)
        params = _params(response_format=response_format, temperature=temperature, max_tokens=max_tokens)
        keys = ResponseCache.seeded_keys(self._cache_model, params, requests)
        found = self.cache.get_many(keys)
        self.stats.cache_hits += len(found)
        return [found.get(k) for k in keys]

    def recall_results(self, names: Sequence[str]) -> dict[str, str]:
        """Results stored by ``store_results`` under these names (for this model), by name; each
        counts as a cache hit."""
        if not self.cache:
            return {}
        keys = [self._result_key(n) for n in names]
        found = self.cache.get_results(keys)
        self.stats.cache_hits += len(found)
        return {n: found[k] for n, k in zip(names, keys, strict=True) if k in found}

    def store_results(self, items: Sequence[tuple[str, str]]) -> None:
        """Keep finished results (``name`` -> text) built from this client's answers. A name must
        cover everything the result was built from, apart from the model (added here)."""
        if self.cache and items:
            self.cache.put_results([(self._result_key(n), v) for n, v in items])

    def _result_key(self, name: str) -> str:
        return hashlib.sha256(f"{self._cache_model}\x1f{name}".encode()).hexdigest()

    def _check_budget(self, worst: float) -> None:
        budget = self.config.max_budget
        if budget is None or not self.price_known:
            return
        if self.stats.cost_usd + self._reserved + worst > budget:
            raise BudgetExceeded(
                f"--max-budget ${budget:.2f} reached: ${self.stats.cost_usd:.4f} spent, the next request could "
                f"cost up to ${worst:.4f}"
            )

    async def _call_with_retries(self, messages: Messages, params: dict[str, Any], est_tokens: int) -> Completion:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": self._litellm_model,
            "messages": messages,
            "timeout": cfg.timeout,
            "num_retries": 0,
            "max_retries": 0,  # the OpenAI SDK would otherwise retry on its own, unseen
            **{k: v for k, v in params.items() if self._supported is None or k in self._supported},
        }
        if cfg.api_base and cfg.model != LOCAL:
            kwargs["api_base"] = cfg.api_base
        if self._key:
            kwargs["api_key"] = self._key
        attempt = 0
        while True:
            if self._rpm:
                await self._rpm.take(1)
            if self._tpm:
                await self._tpm.take(est_tokens)
            self.stats.requests += 1
            try:
                call = _lib().acompletion(**kwargs)
                # a hard deadline too: a server trickling bytes can outlast the SDK's per-read timeout
                # (not for the local model, whose calls queue for one in-process generator)
                resp = await (call if cfg.model == LOCAL else asyncio.wait_for(call, cfg.timeout + 5))
                if not getattr(resp, "choices", None):
                    raise EmptyResponse("the server answered without any choice")
            except Exception as e:
                kind, status = _classify(e)
                if self._tpm:
                    self._tpm.give_back(est_tokens)
                if kind == "unknown":
                    raise
                message = _scrub(_first_line(str(e)), self._key)
                if kind == "retry" and attempt < cfg.max_retries:
                    await asyncio.sleep(self._backoff(attempt, e))
                    attempt += 1
                    self.stats.retries += 1
                    continue
                if kind == "retry":
                    message = f"gave up after {attempt + 1} attempt{'s' * (attempt > 0)}: {message}"
                raise LLMError(message, status=status, kind=kind) from None
            return self._completion(resp, est_tokens)

    def _backoff(self, attempt: int, e: Exception) -> float:
        cfg = self.config
        delay = min(cfg.backoff_max, cfg.backoff_base * 2**attempt) * self._rng.uniform(0.5, 1.0)
        response = getattr(e, "response", None)
        headers = getattr(e, "litellm_response_headers", None) or getattr(response, "headers", None)
        asked = retry_after_seconds(headers)
        if asked is not None:
            delay = min(asked, cfg.retry_after_max) * self._rng.uniform(1.0, 1.1)  # at least what was asked
        return delay

    def _completion(self, resp: Any, est_tokens: int) -> Completion:
        choice = resp.choices[0]
        text = getattr(choice.message, "content", None) or ""
        u = getattr(resp, "usage", None)
        usage = {
            "prompt_tokens": int(getattr(u, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(u, "completion_tokens", 0) or 0),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        cost = self.estimate_cost(usage["prompt_tokens"], usage["completion_tokens"])
        self.stats.prompt_tokens += usage["prompt_tokens"]
        self.stats.completion_tokens += usage["completion_tokens"]
        self.stats.cost_usd += cost
        if self._tpm:
            self._tpm.give_back(est_tokens - usage["total_tokens"])
        return Completion(text, usage, cost, False, getattr(choice, "finish_reason", None))

    def close(self) -> None:
        if self.cache:
            self.cache.close()


def _params(**params: Any) -> dict[str, Any]:
    """The request parameters that are set (they are part of the cache key)."""
    return {k: v for k, v in params.items() if v is not None}


def _prices(model: str) -> tuple[float | None, float | None]:
    """Per-token input and output prices from LiteLLM's table, or (None, None) when unknown."""
    try:
        info = _lib().get_model_info(model)
    except Exception:
        return None, None
    p_in, p_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if p_in is None or p_out is None:
        return None, None
    return float(p_in), float(p_out)


def _supported_params(model: str) -> set[str] | None:
    """The OpenAI parameters LiteLLM can pass to this model (None: unknown, pass everything)."""
    try:
        names = _lib().get_supported_openai_params(model=model)
    except Exception:
        return None
    return set(names) if names else None


def open_client(config: ClientConfig, *, need_key: bool = True) -> LiteLLMClient:
    """Check the options and the key (one-line UsageError, before any call), then build the client."""
    if config.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    if config.timeout <= 0:
        raise UsageError("--timeout must be positive")
    for name, value in (("--rpm", config.rpm), ("--tpm", config.tpm), ("--max-budget", config.max_budget)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be positive")
    key = resolve_api_key(config.model, config.api_base, config.api_key_env) if need_key else None
    if config.model == LOCAL:
        from mghkit import local_llm

        local_llm.check_available()
    return LiteLLMClient(config, api_key=key)


# ----------------------------------------------------------------------------- the embedded model
def _local_handler() -> Any:
    """A LiteLLM custom provider (``mghkit-local``) that runs the embedded GGUF model in-process."""
    litellm = _lib()

    class LocalHandler(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            from mghkit import local_llm

            opts = dict(kwargs.get("optional_params") or {})
            try:
                out = await asyncio.to_thread(local_llm.chat, messages, **_local_options(opts))
            except local_llm.LocalModelError as e:  # e.g. a prompt longer than the context: not retryable
                raise litellm.BadRequestError(str(e), model=model, llm_provider=LOCAL_PROVIDER) from None
            return litellm.ModelResponse(
                model=model,
                choices=[{"index": 0, "finish_reason": out.finish_reason,
                          "message": {"role": "assistant", "content": out.text}}],
                usage={"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                       "total_tokens": out.prompt_tokens + out.completion_tokens},
            )  # fmt: skip

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return asyncio.run(self.acompletion(model, messages, *args, **kwargs))

    return LocalHandler()


def _local_options(opts: dict[str, Any]) -> dict[str, Any]:
    keep = ("response_format", "seed", "temperature", "max_tokens")
    return {k: opts[k] for k in keep if opts.get(k) is not None}


def register_local_provider() -> None:
    """Route ``mghkit-local/...`` model names to the embedded model (idempotent)."""
    litellm = _lib()
    if not any(p.get("provider") == LOCAL_PROVIDER for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": LOCAL_PROVIDER, "custom_handler": _local_handler()},
        ]
