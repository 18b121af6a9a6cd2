"""A scripted LLM client: replies queued with ``enqueue`` or made by a responder, every call kept
in ``history`` (simonw/llm's mock-model pattern). For tests, examples and dry wiring - no network.

    >>> import asyncio
    >>> client = ScriptedClient().enqueue("first", "second")
    >>> asyncio.run(client.complete([{"role": "user", "content": "hi"}], seed=1)).text
    'first'
    >>> client.history[0]["seed"], client.stats.requests
    (1, 1)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from mghkit.llm.base import ClientStats, Completion, Messages


class ScriptedClient:
    """An :class:`~mghkit.llm.base.LLMClient` whose answers are given in advance: queued texts
    first, then ``responder(messages)``; with neither, a call is an AssertionError. Each answer
    reports 10 prompt + 5 completion tokens and costs nothing."""

    def __init__(self, responder: Callable[[Messages], str] | None = None, *, model: str = "scripted") -> None:
        self.model = model
        self.stats = ClientStats()
        self.price_known = False
        self.queue: deque[str] = deque()
        self.responder = responder
        self.history: list[dict[str, Any]] = []

    def enqueue(self, *texts: str) -> ScriptedClient:
        self.queue.extend(texts)
        return self

    async def complete(
        self,
        messages: Messages,
        *,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        self.history.append({"messages": messages, "response_format": response_format, "seed": seed,
                             "temperature": temperature, "max_tokens": max_tokens})  # fmt: skip
        self.stats.requests += 1
        if self.queue:
            text = self.queue.popleft()
        elif self.responder is not None:
            text = self.responder(messages)
        else:
            raise AssertionError("ScriptedClient: no reply queued")
        self.stats.prompt_tokens += 10
        self.stats.completion_tokens += 5
        return Completion(text, {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, 0.0)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0
