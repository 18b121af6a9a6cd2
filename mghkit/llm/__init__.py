"""The one door to LLMs.

The synthesis steps see a small protocol, :class:`LLMClient` (``await client.complete(messages)``
-> :class:`Completion`), so a notebook or a test can hand them anything that answers
(:class:`ScriptedClient` is one). The real client, :class:`LiteLLMClient` (from
:func:`open_client`), reaches any LiteLLM model, or ``model="local"``: the embedded
SmolLM2-135M-Instruct, in-process.

The pieces: :mod:`~mghkit.llm.base` (protocol, records, errors, config),
:mod:`~mghkit.llm.client` (the real client: the only LiteLLM import, retries, cost, budget),
:mod:`~mghkit.llm.cache` (the sqlite response cache), :mod:`~mghkit.llm.limits` (rate limits,
backoff), :mod:`~mghkit.llm.local` (the embedded model), :mod:`~mghkit.llm.scripted` (a fake).

Importing this package imports no LiteLLM: that happens on the first call that needs it.

    >>> client, owned = as_client(ScriptedClient(lambda messages: "hi"))
    >>> isinstance(client, LLMClient), owned
    (True, False)
"""

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
from mghkit.llm.client import LiteLLMClient, as_client, open_client, resolve_api_key
from mghkit.llm.limits import TokenBucket, retry_after_seconds
from mghkit.llm.scripted import ScriptedClient

__all__ = [
    "CACHE_FILE",
    "LOCAL",
    "BudgetExceeded",
    "ClientConfig",
    "ClientStats",
    "Completion",
    "LLMClient",
    "LLMError",
    "LiteLLMClient",
    "Messages",
    "ResponseCache",
    "ScriptedClient",
    "TokenBucket",
    "as_client",
    "open_client",
    "resolve_api_key",
    "retry_after_seconds",
]
