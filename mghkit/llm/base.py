"""What every LLM client shares: the protocol the synthesis steps see, its records, its errors and
its configuration (no LiteLLM here).

    >>> c = Completion("hello", {"prompt_tokens": 3, "completion_tokens": 1})
    >>> c.text, c.cached
    ('hello', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mghkit.errors import RuntimeFailure, UsageError

LOCAL = "local"  # the model name of the embedded offline LLM (see mghkit.llm.local)
Messages = list[dict[str, str]]
TIMEOUT_HOSTED = 120.0  # seconds: a hosted API answers in well under a minute
TIMEOUT_SELF_HOSTED = 600.0  # with --api-base: a CPU server can take minutes for one reply


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
    """What a client did (cache hits cost nothing and are not requests)."""

    requests: int = 0  # HTTP (or local) calls attempted, retries included
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider's prompt cache served (part of prompt_tokens)
    cost_usd: float = 0.0  # spent (cache hits excluded)


@runtime_checkable
class LLMClient(Protocol):
    """What the synthesis steps need from an LLM: ``await complete(messages, ...)``.

    Optional extras a client may offer (used when present): ``count_tokens(messages)``,
    ``lookup_many`` / ``recall_results`` / ``store_results`` (a cache), ``close()``.
    """

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


def check_sampling(max_tokens: int | None, temperature: float | None) -> None:
    """Refuse a ``--max-tokens`` below 1 or a ``--temperature`` outside [0, 2] (one-line UsageError).

    >>> check_sampling(0, None)
    Traceback (most recent call last):
    mghkit.errors.UsageError: --max-tokens must be at least 1
    """
    if max_tokens is not None and max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    if temperature is not None and not 0 <= temperature <= 2:
        raise UsageError("--temperature must be between 0 and 2")


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


@dataclass
class ClientConfig:
    """How to reach a model; the fields are the CLI's options of the same names."""

    model: str = "gpt-4o"
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float | None = None  # None: TIMEOUT_SELF_HOSTED with an api_base, else TIMEOUT_HOSTED
    max_retries: int = 5
    rpm: float | None = None
    tpm: float | None = None
    max_budget: float | None = None
    cache_dir: str | Path | None = None
    use_cache: bool = True
    backoff_base: float = 1.0  # seconds before the first retry (doubled each time, jittered)
    backoff_max: float = 60.0
    retry_after_max: float = 120.0
    extra_body: dict[str, Any] | None = None  # sent as is in the request body (LiteLLM's extra_body)
    # resend a request that timed out? None: not to an api_base (the server is still computing it)
    resend_timeouts: bool | None = None
    deployments: str | Path | None = None  # a LiteLLM Router model list (mghkit.llm.deployments)

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take: ``timeout``, else 600 for an ``api_base`` (a CPU server
        can take minutes for one reply), else 120.

        >>> ClientConfig().request_timeout, ClientConfig(api_base="http://h/v1").request_timeout
        (120.0, 600.0)
        """
        if self.timeout is not None:
            return float(self.timeout)
        return TIMEOUT_SELF_HOSTED if self.api_base else TIMEOUT_HOSTED

    def check(self) -> None:
        """Refuse impossible values with a one-line UsageError naming the option.

        >>> ClientConfig(rpm=0).check()
        Traceback (most recent call last):
        mghkit.errors.UsageError: --rpm must be positive
        """
        if self.deployments and (self.api_base or self.api_key_env):
            raise UsageError("--deployments names the endpoints and keys: drop --api-base / --api-key-env")
        if self.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError("--timeout must be positive")
        for name, value in (("--rpm", self.rpm), ("--tpm", self.tpm), ("--max-budget", self.max_budget)):
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be positive")
