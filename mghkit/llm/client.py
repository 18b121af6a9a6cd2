"""The real client, :class:`LiteLLMClient`: the only module of mghkit that imports LiteLLM.

What a long paid run needs, on top of LiteLLM:

- retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections,
  honouring ``Retry-After`` (LiteLLM's and the OpenAI SDK's own retries are switched off, so
  every attempt is ours and counted) - except a timeout against an ``api_base``: a self-hosted
  server keeps computing the abandoned reply, so resending it would only queue the same work twice;
- structured output on self-hosted servers: the JSON schema goes out as ``response_format``
  ``json_schema``; a server that refuses it gets ``json_object`` (with the schema, which
  llama-cpp-python's server honours), then no ``response_format`` at all - remembered for the run;
- one-line errors that say what to do: a request too long for the server's context window (its
  size and the fix), a server that cannot be reached (its URL, and /v1 when the URL lacks it);
- ``--rpm`` / ``--tpm`` limits (:mod:`mghkit.llm.limits`);
- the response cache (:mod:`mghkit.llm.cache`), so a rerun re-bills nothing;
- cost from LiteLLM's price table (unknown or local models: 0, flagged "price unknown") and a
  budget that refuses a request whose worst-case cost would cross ``--max-budget``;
- API keys read from the environment, passed to LiteLLM in memory, scrubbed from error text.

``model="local"`` is the embedded SmolLM2-135M-Instruct, called in-process
(:mod:`mghkit.llm.local`) through the same retry, cache and cost path, without LiteLLM.

Process-wide LiteLLM settings (the offline price map, quiet logs, ``gc.freeze``) are the CLI's
(:func:`mghkit.cli.setup.setup_synth`); without them LiteLLM still works, only louder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from collections.abc import Sequence
from typing import Any

from mghkit.errors import UsageError
from mghkit.hashing import stable_id
from mghkit.llm.base import (
    LOCAL,
    BudgetExceeded,
    ClientConfig,
    ClientStats,
    Completion,
    LLMClient,
    LLMError,
    Messages,
)
from mghkit.llm.cache import CACHE_FILE, ResponseCache
from mghkit.llm.failures import (
    EmptyResponse,
    classify,
    first_line,
    format_fallbacks,
    is_connection_error,
    is_context_error,
    is_timeout,
    scrub,
    v1_hint,
)
from mghkit.llm.limits import TokenBucket, backoff_delay, retry_after_seconds
from mghkit.paths import cache_dir

log = logging.getLogger(__name__)

LOCAL_PROVIDER = "mghkit-local"  # how the embedded model is named to LiteLLM's token counter
# LiteLLM providers that are servers the user runs (structured output is sent to them, as to any --api-base)
SELF_HOSTED_PREFIXES = ("ollama/", "ollama_chat/", "lm_studio/", "hosted_vllm/", "llamafile/")
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|schema|grammar", re.IGNORECASE)


def litellm_module() -> Any:
    """LiteLLM, imported on first use (2-3 s): the one import of it in mghkit."""
    import litellm

    return litellm


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
        env = litellm_module().validate_environment(model)
    except Exception:  # an unknown provider: let the call itself report it
        return None
    missing = [k for k in env.get("missing_keys", []) if "KEY" in k or "TOKEN" in k]
    if missing:
        raise UsageError(
            f"{model} needs {missing[0]} in the environment (or --api-key-env NAME); "
            "for the offline embedded model use --model local"
        )
    return None


class LiteLLMClient:
    """The real client. Create it with :func:`open_client` (which checks the options and the key)."""

    def __init__(self, config: ClientConfig, *, api_key: str | None = None) -> None:
        self.config = config
        self.model = config.model
        self.stats = ClientStats()
        self._key = api_key
        self._local = config.model == LOCAL
        if self._local:
            from mghkit.llm.local import MODEL_FILE, MODEL_NAME

            self._litellm_model = f"{LOCAL_PROVIDER}/{MODEL_NAME}"
            self._cache_model = f"{LOCAL}:{MODEL_FILE}"
            self.price_in: float | None = None
            self.price_out: float | None = None
            self.price_cached: float | None = None
            self.deployments = None
            self._supported: set[str] | None = None
        else:
            self._litellm_model = self._cache_model = config.model
            priced = config.model
            self.deployments = None
            if config.deployments:  # prices and parameters: those of the group's first deployment
                from mghkit.llm.deployments import load_deployments

                self.deployments = load_deployments(config.deployments)
                priced = self.deployments.group(config.model)[0].model
            self.price_in, self.price_out = _prices(priced)
            self.price_cached = model_price(priced, "cache_read_input_token_cost")
            self._supported = _supported_params(priced)
            if config.extra_body:  # it changes the answers: part of every cache key
                self._cache_model += "\x1f" + json.dumps(config.extra_body, sort_keys=True, separators=(",", ":"))
        # with an api_base or a self-hosted provider: the JSON schema is sent (see format_fallbacks)
        self.structured_output = self._local or bool(config.api_base) or config.model.startswith(SELF_HOSTED_PREFIXES)
        if self.deployments is not None:
            group = self.deployments.group(config.model)
            self.structured_output = all(d.api_base or d.model.startswith(SELF_HOSTED_PREFIXES) for d in group)
        self._router: Any = None
        self._resend_timeouts = config.resend_timeouts if config.resend_timeouts is not None else not config.api_base
        self._format_step = 0  # how far down format_fallbacks this server made us go (kept for the run)
        self.price_known = self.price_in is not None
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
            return int(litellm_module().token_counter(model=self._litellm_model, messages=messages))
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

    # -- batch mode (mghkit.llm.batch): the same request as complete() would send, as a batch line
    def batch_request(
        self,
        messages: Messages,
        *,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """(the cache key of ``complete(messages, ...)``, the chat request body a batch line carries):
        the key is the line's ``custom_id``, so a batch answer lands where an online one would."""
        params = _params(response_format=response_format, seed=seed, temperature=temperature, max_tokens=max_tokens)
        key = ResponseCache.key(self._cache_model, messages, params)
        body: dict[str, Any] = dict(self.config.extra_body or {})
        body.update({k: v for k, v in params.items() if self._supported is None or k in self._supported})
        body["model"] = self.config.model.split("/", 1)[1] if "/" in self.config.model else self.config.model
        body["messages"] = messages
        return key, body

    # -- the cache, in bulk (a warm rerun's fast path)
    def lookup_many(
        self,
        requests: Sequence[tuple[Messages, int]],
        *,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> list[Completion | None]:
        """The cached answers of many ``complete(messages, seed=seed, ...)`` calls, without calling
        anything: one batched cache lookup. Hits count as cache hits; a None is a request still to make."""
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
        return stable_id(self._cache_model, name, n=64)  # sha256 of (model, name)

    def _check_budget(self, worst: float) -> None:
        budget = self.config.max_budget
        if budget is None or not self.price_known:
            return
        if self.stats.cost_usd + self._reserved + worst > budget:
            raise BudgetExceeded(
                f"--max-budget ${budget:.2f} reached: ${self.stats.cost_usd:.4f} spent, the next request could "
                f"cost up to ${worst:.4f}"
            )

    # -- one request, retried
    async def _call_with_retries(self, messages: Messages, params: dict[str, Any], est_tokens: int) -> Completion:
        cfg = self.config
        attempt = 0
        formats = [params.get("response_format")] if self._local else format_fallbacks(params.get("response_format"))
        step = min(self._format_step, len(formats) - 1)
        first_refusal: LLMError | None = None
        while True:
            if self._rpm:
                await self._rpm.take(1)
            if self._tpm:
                await self._tpm.take(est_tokens)
            self.stats.requests += 1
            sent = {k: v for k, v in params.items() if k != "response_format"}
            if formats[step] is not None:
                sent["response_format"] = formats[step]
            try:
                text, finish, usage = await self._send(messages, sent)
            except Exception as e:
                kind, status = classify(e)
                if self._tpm:
                    self._tpm.give_back(est_tokens)
                if kind == "unknown":
                    raise
                message = scrub(first_line(str(e)), self._key)
                if self._local:
                    pass
                elif is_context_error(e, status):
                    raise self._context_error(messages, params, message, status) from None
                elif self._format_refused(e, status, formats[step]) and step + 1 < len(formats):
                    first_refusal = first_refusal or LLMError(message, status=status, kind="request")
                    step += 1  # the server refused this response_format: ask again without it
                    continue
                elif is_timeout(e) and not self._resend_timeouts:  # the server is still computing it
                    raise LLMError(
                        f"no reply from {cfg.api_base} within --timeout {cfg.request_timeout:g} s; not resent, as "
                        "the server may still be working on it: raise --timeout, or lower --concurrency",
                        status=status, kind="request",
                    ) from None  # fmt: skip
                if kind == "retry" and attempt < cfg.max_retries:
                    await asyncio.sleep(self._backoff(attempt, e))
                    attempt += 1
                    self.stats.retries += 1
                    continue
                if first_refusal is not None and kind == "request":  # not the format after all
                    raise first_refusal from None
                if is_connection_error(e) and cfg.api_base:  # nothing answers there: no point going on
                    tries = f" after {attempt + 1} attempt{'s' * (attempt > 0)}"
                    raise LLMError(f"cannot reach {cfg.api_base}{tries} ({message}); is the server running?"
                                   f"{v1_hint(cfg.model, cfg.api_base)}", status=status, kind="fatal") from None  # fmt: skip
                if kind == "fatal" and status == 404 and cfg.api_base:
                    message += v1_hint(cfg.model, cfg.api_base)
                if kind == "retry":
                    message = f"gave up after {attempt + 1} attempt{'s' * (attempt > 0)}: {message}"
                raise LLMError(message, status=status, kind=kind) from None
            if step > self._format_step:
                self._format_step = step
                log.warning("%s refused response_format %s: sending %s from now on", cfg.api_base or cfg.model,
                            formats[0] and formats[0].get("type"),
                            (formats[step] or {}).get("type", "no response_format"))  # fmt: skip
            return self._account(text, finish, usage, est_tokens)

    def _format_refused(self, e: Exception, status: int | None, fmt: dict[str, Any] | None) -> bool:
        """Whether the server refused the request for its response_format: an error status whose
        message names it (a 400 or 422; llama-cpp-python's server answers an unknown type with a 500).
        Any other refusal is the request's own (not a reason to drop the format for the whole run)."""
        if fmt is None or status is None or status < 400:
            return False
        return bool(_FORMAT_WORDS.search(str(e)))

    def _context_error(self, messages: Messages, params: dict[str, Any], message: str, status: int | None) -> LLMError:
        """One line: the request does not fit the server's context window - its size and the fix."""
        tokens = self.count_tokens(messages)
        max_tokens = params.get("max_tokens")
        asked = f" + --max-tokens {max_tokens:,}" if max_tokens else ""
        where = self.config.api_base or self.config.model
        return LLMError(
            f"the request does not fit the context window of {where}: the prompt is about {tokens:,} tokens{asked} "
            "(server: " + message[:200] + "); lower --max-tokens, or give the server a larger context (llama.cpp: "
            "--n_ctx 4096 / llama-server -c 4096; vLLM: --max-model-len; Ollama: num_ctx)",
            status=status, kind="request",
        )  # fmt: skip

    async def _send(self, messages: Messages, params: dict[str, Any]) -> tuple[str, str | None, dict[str, int]]:
        """One attempt: (text, finish reason, prompt and completion tokens)."""
        if self._local:  # calls queue for one in-process generator: no deadline
            from mghkit.llm.local import acomplete

            out = await acomplete(messages, **params)
            return out.text, out.finish_reason, {"prompt_tokens": out.prompt_tokens,
                                                 "completion_tokens": out.completion_tokens}  # fmt: skip
        cfg = self.config
        timeout = cfg.request_timeout
        if self.deployments is not None:  # the Router picks a deployment (load balancing, cooldown, fallbacks)
            if self._router is None:
                self._router = self.deployments.router()
            call = self._router.acompletion
        else:
            call = litellm_module().acompletion
        kwargs: dict[str, Any] = {
            "model": self._litellm_model,
            "messages": messages,
            "timeout": timeout,
            "num_retries": 0,
            "max_retries": 0,  # the OpenAI SDK would otherwise retry on its own, unseen
            # Not litellm.drop_params (an HTTP 422 would be retried inside LiteLLM, unseen and
            # uncounted): the parameters this model cannot take are dropped here instead.
            **{k: v for k, v in params.items() if self._supported is None or k in self._supported},
        }
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        if self._key:
            kwargs["api_key"] = self._key
        if cfg.extra_body:
            kwargs["extra_body"] = cfg.extra_body
        # a hard deadline too: a server trickling bytes can outlast the SDK's per-read timeout
        resp = await asyncio.wait_for(call(**kwargs), timeout + 5)
        if not getattr(resp, "choices", None):
            raise EmptyResponse("the server answered without any choice")
        choice = resp.choices[0]
        u = getattr(resp, "usage", None)
        usage = {"prompt_tokens": int(getattr(u, "prompt_tokens", 0) or 0),
                 "completion_tokens": int(getattr(u, "completion_tokens", 0) or 0)}  # fmt: skip
        cached = getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", None)
        if cached:  # the provider's prompt cache served this part of the prompt
            usage["cached_tokens"] = int(cached)
        return getattr(choice.message, "content", None) or "", getattr(choice, "finish_reason", None), usage

    def _backoff(self, attempt: int, e: Exception) -> float:
        cfg = self.config
        response = getattr(e, "response", None)
        headers = getattr(e, "litellm_response_headers", None) or getattr(response, "headers", None)
        return backoff_delay(attempt, base=cfg.backoff_base, cap=cfg.backoff_max, jitter=self._rng.uniform(0.5, 1.0),
                             asked=retry_after_seconds(headers), asked_max=cfg.retry_after_max)  # fmt: skip

    def _account(self, text: str, finish: str | None, usage: dict[str, int], est_tokens: int) -> Completion:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        cached = usage.get("cached_tokens", 0)
        cost = self.estimate_cost(usage["prompt_tokens"] - cached, usage["completion_tokens"])
        if cached and self.price_known:  # at the provider's cache-read price where the table has one
            cost += cached * (self.price_cached if self.price_cached is not None else self.price_in or 0.0)
        self.stats.prompt_tokens += usage["prompt_tokens"]
        self.stats.completion_tokens += usage["completion_tokens"]
        self.stats.cached_tokens += usage.get("cached_tokens", 0)
        self.stats.cost_usd += cost
        if self._tpm:
            self._tpm.give_back(est_tokens - usage["total_tokens"])
        return Completion(text, usage, cost, False, finish)

    def close(self) -> None:
        if self.cache:
            self.cache.close()


def _params(**params: Any) -> dict[str, Any]:
    """The request parameters that are set (they are part of the cache key)."""
    return {k: v for k, v in params.items() if v is not None}


def _prices(model: str) -> tuple[float | None, float | None]:
    """Per-token input and output prices from LiteLLM's table, or (None, None) when unknown."""
    try:
        info = litellm_module().get_model_info(model)
    except Exception:
        return None, None
    p_in, p_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if p_in is None or p_out is None:
        return None, None
    return float(p_in), float(p_out)


def model_price(model: str, name: str) -> float | None:
    """One price field of LiteLLM's table (e.g. ``input_cost_per_token_batches``), or None."""
    try:
        value = litellm_module().get_model_info(model).get(name)
    except Exception:
        return None
    return None if value is None else float(value)


def _supported_params(model: str) -> set[str] | None:
    """The OpenAI parameters LiteLLM can pass to this model (None: unknown, pass everything)."""
    try:
        names = litellm_module().get_supported_openai_params(model=model)
    except Exception:
        return None
    return set(names) if names else None


def open_client(config: ClientConfig, *, need_key: bool = True) -> LiteLLMClient:
    """Check the options, the cache directory and the key (one-line UsageError, before any
    call), then build the client."""
    config.check()
    cache_dir(config.cache_dir, create=False)  # a --cache-dir that is a file: exit 2, also in a dry run
    if config.deployments:  # keys come from the variables the file names: all checked now
        from mghkit.llm.deployments import load_deployments

        deployments = load_deployments(config.deployments)
        deployments.group(config.model)  # the model must name one of the file's groups: checked now
        if need_key:
            for d in deployments.entries:
                d.key()
        key = None
    else:
        key = resolve_api_key(config.model, config.api_base, config.api_key_env) if need_key else None
    if config.model == LOCAL:
        from mghkit.llm.local import check_available

        check_available()
    return LiteLLMClient(config, api_key=key)


def as_client(model: str | LLMClient, *, need_key: bool = True, **options: Any) -> tuple[LLMClient, bool]:
    """(a client for ``model``, whether the caller owns it). A client object is used as it is (the
    caller's, not closed here); a model name is opened with ``options`` (the fields of
    :class:`ClientConfig`), and the caller closes it."""
    if not isinstance(model, str):
        if not callable(getattr(model, "complete", None)):
            raise UsageError(f"model: expected a model name or an LLM client, got {type(model).__name__}")
        return model, False
    return open_client(ClientConfig(model=model, **options), need_key=need_key), True
