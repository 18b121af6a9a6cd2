"""How a failed LLM call is read: retry, give up, or blame the request - and the one-line text a
human sees (API keys scrubbed). LiteLLM's exception classes are reached through
:func:`mghkit.llm.client.litellm_module` (client.py stays the only module that imports LiteLLM).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

_RETRY_STATUS = {408, 409, 425, 429}
_FATAL_STATUS = {401, 403, 404}
_CONTEXT_ERROR = re.compile(r"context|n_ctx|exceed|too long|maximum.{0,20}length", re.IGNORECASE)


def scrub(text: str, secret: str | None) -> str:
    """Remove an API key (and anything shaped like one) from text meant for a human.

    >>> scrub("bad key sk-abcdef123456 for x", None)
    'bad key sk-*** for x'
    """
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return re.sub(r"\b(sk|key|tok)-[A-Za-z0-9_\-*]{6,}", r"\1-***", text)


def first_line(text: str, n: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[:n] + "..."


class EmptyResponse(Exception):
    """A 200 answer with no choices in it: the server's fault, retried like a 5xx."""


def is_timeout(e: Exception) -> bool:
    """Whether a call failed because no reply came in time."""
    if isinstance(e, asyncio.TimeoutError):
        return True
    from mghkit.llm.client import litellm_module

    return isinstance(e, litellm_module().Timeout)


def is_connection_error(e: Exception) -> bool:
    """Whether a call failed to reach the server at all (refused, unknown host, reset)."""
    from mghkit.llm.client import litellm_module

    litellm = litellm_module()
    if isinstance(e, litellm.APIConnectionError) and not isinstance(e, litellm.Timeout):
        return True
    text = str(e).lower()
    return getattr(e, "status_code", None) in (None, 500) and (
        "connection error" in text or "connection refused" in text or "connecterror" in text
    )


def is_context_error(e: Exception, status: int | None) -> bool:
    """Whether the server refused the request as too long for its context window."""
    from mghkit.llm.client import litellm_module

    if isinstance(e, litellm_module().ContextWindowExceededError):
        return True
    return status in (400, 413, 422, 500) and bool(_CONTEXT_ERROR.search(str(e)))


def v1_hint(model: str, api_base: str | None) -> str:
    """A hint when an OpenAI-compatible base URL lacks the usual /v1.

    >>> v1_hint("openai/m", "http://127.0.0.1:8000")
    '; OpenAI-compatible servers answer under /v1: try --api-base http://127.0.0.1:8000/v1'
    >>> v1_hint("openai/m", "http://127.0.0.1:8000/v1"), v1_hint("ollama/m", "http://h:11434")
    ('', '')
    """
    if not api_base or model.startswith(("ollama/", "ollama_chat/")) or "/v1" in api_base:
        return ""
    return f"; OpenAI-compatible servers answer under /v1: try --api-base {api_base.rstrip('/')}/v1"


def format_fallbacks(response_format: dict[str, Any] | None) -> list[dict[str, Any] | None]:
    """What to send, in order, for a ``response_format`` a server may refuse.

    >>> fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}}}
    >>> format_fallbacks(fmt)[1:]
    [{'type': 'json_object', 'schema': {'type': 'object'}}, None]
    >>> format_fallbacks({"type": "json_object"})
    [{'type': 'json_object'}, None]
    """
    if not response_format:
        return [None]
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return [response_format, {"type": "json_object", "schema": schema}, None]
    return [response_format, None]


def classify(e: Exception) -> tuple[str, int | None]:
    """('retry' | 'fatal' | 'request' | 'unknown', status) for an exception from a call."""
    from mghkit.llm.local import LocalModelError

    if isinstance(e, LocalModelError):  # e.g. a prompt longer than the context: not retryable
        return "request", None
    if isinstance(e, asyncio.TimeoutError | EmptyResponse):
        return "retry", None
    from mghkit.llm.client import litellm_module

    litellm = litellm_module()
    status = getattr(e, "status_code", None)
    if isinstance(e, litellm.Timeout | litellm.APIConnectionError):
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
