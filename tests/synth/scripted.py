"""A scripted LLM client for unit tests of prompt logic (no network): replies are queued with
``enqueue`` or made by a responder; every call is kept in ``history``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from mghkit.llm import ClientStats, Completion


class ScriptedClient:
    def __init__(
        self, responder: Callable[[list[dict[str, str]]], str] | None = None, *, model: str = "scripted"
    ) -> None:
        self.model = model
        self.stats = ClientStats()
        self.price_known = False
        self.queue: deque[str] = deque()
        self.responder = responder
        self.history: list[dict[str, Any]] = []

    def enqueue(self, *texts: str) -> ScriptedClient:
        self.queue.extend(texts)
        return self

    async def complete(self, messages, *, response_format=None, seed=None, temperature=None, max_tokens=None):
        self.history.append(
            {
                "messages": messages,
                "response_format": response_format,
                "seed": seed,
                "temperature": temperature,
                "max_tokens": max_tokens,
            }
        )
        self.stats.requests += 1
        if self.queue:
            text = self.queue.popleft()
        elif self.responder is not None:
            text = self.responder(messages)
        else:
            raise AssertionError("ScriptedClient: no reply queued")
        return Completion(text, {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, 0.0)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0
