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

    def check(self) -> None:
        """Refuse impossible values with a one-line UsageError naming the option.

        >>> ClientConfig(rpm=0).check()
        Traceback (most recent call last):
        mghkit.errors.UsageError: --rpm must be positive
        """
        if self.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")
        if self.timeout <= 0:
            raise UsageError("--timeout must be positive")
        for name, value in (("--rpm", self.rpm), ("--tpm", self.tpm), ("--max-budget", self.max_budget)):
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be positive")
