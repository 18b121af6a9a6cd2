"""What a synthesis run reports: its LLM usage, a dry run's estimate, and (opt-in) a rich progress
bar on stderr. The numbers come back as stats objects; the CLI renders them.

    >>> e = Estimate(requests=2, prompt_tokens=1000, completion_tokens=500, model="m", price_in=1e-6, price_out=2e-6)
    >>> round(e.cost_usd, 6)
    0.002
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mghkit.llm.base import ClientStats, LLMClient, Messages

log = logging.getLogger(__name__)


@dataclass
class Usage:
    """What the client did in a run (a snapshot of its counters), and whether its price is known."""

    model: str = ""
    price_known: bool = False
    client: ClientStats = field(default_factory=ClientStats)

    @classmethod
    def of(cls, client: LLMClient) -> Usage:
        return cls(client.model, client.price_known, dataclasses.replace(client.stats))


@dataclass
class Estimate:
    """A dry run's forecast: requests, tokens and, where the price is known, the cost."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    model: str
    price_in: float | None = None  # USD per token; None: unknown
    price_out: float | None = None
    batch_files: int | None = None  # with --batch: the request files the requests go out in
    batch_bytes: int = 0

    @property
    def cost_usd(self) -> float | None:
        if self.price_in is None or self.price_out is None:
            return None
        return self.prompt_tokens * self.price_in + self.completion_tokens * self.price_out


def estimate(client: LLMClient, requests: int, prompt_tokens: int, completion_tokens: int) -> Estimate:
    known = client.price_known
    return Estimate(requests, prompt_tokens, completion_tokens, client.model,
                    getattr(client, "price_in", None) if known else None,
                    getattr(client, "price_out", None) if known else None)  # fmt: skip


def count_tokens(client: LLMClient, messages: Messages) -> int:
    """Prompt tokens by the client's tokenizer when it has one, else ~4 characters a token."""
    counter = getattr(client, "count_tokens", None)
    if counter is not None:
        return int(counter(messages))
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4


def warn_if_unpriced(stage: str, client: LLMClient, max_budget: float | None) -> None:
    if max_budget is not None and not client.price_known:
        log.warning("%s: warning: no price for %s in LiteLLM's table, so --max-budget cannot be enforced",
                    stage, client.model)  # fmt: skip


class RunProgress:
    """done/total, rate, ETA, retries and cost so far - on stderr, never stdout. Disabled, it
    costs nothing and imports nothing."""

    def __init__(self, total: int, description: str, client: LLMClient, *, enabled: bool = True) -> None:
        self.client = client
        self._progress: Any = None
        self._pending = 0
        self._last = 0.0
        if enabled:
            self._progress = _make_progress()
            self._task = self._progress.add_task(description, total=total, retries=0, cost=self._cost())

    def _cost(self) -> str:
        if not self.client.price_known:
            return "$0 (price unknown)"
        return f"${self.client.stats.cost_usd:.4f}"

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done; the bar itself is updated at most every 50 ms (cheap per record)."""
        if self._progress is None:
            return
        self._pending += n
        now = time.monotonic()
        if now - self._last >= 0.05:
            self._flush(now)

    def _flush(self, now: float) -> None:
        self._progress.update(self._task, advance=self._pending, retries=self.client.stats.retries, cost=self._cost())
        self._pending, self._last = 0, now

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: Any) -> None:
        if self._progress is not None:
            self._flush(time.monotonic())
            self._progress.stop()


def _make_progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Records per second since the bar started."""

        def render(self, task: Any) -> Text:
            elapsed = task.elapsed or 0.0
            rate = task.completed / elapsed if elapsed > 0 else 0.0
            return Text(f"{rate:,.1f}/s", style="progress.data.speed")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), TextColumn("retries {task.fields[retries]}"),
                    TextColumn("{task.fields[cost]}"), console=Console(stderr=True), transient=False)  # fmt: skip


class BatchBar(RunProgress):
    """The bar of a batch run: records done of total, ETA, and the batches by status (queued / in
    progress / done) as the runner reports them (:class:`~mghkit.llm.batch.BatchProgress`)."""

    def __init__(self, total: int, description: str, client: LLMClient, *, enabled: bool = True) -> None:
        super().__init__(total, description, client, enabled=enabled)
        self._description = description

    def update(self, p: Any) -> None:
        if self._progress is None:
            return
        line = f"{self._description} [batches: {p.queued} queued, {p.in_progress} in progress, {p.done} done]"
        self._progress.update(self._task, description=line)
        self._flush(time.monotonic())
