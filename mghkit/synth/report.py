"""What a synthesis run shows on stderr: a rich progress bar while it runs, totals at the end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from mghkit.llm import ClientStats, LLMClient


class RateColumn(ProgressColumn):
    """Records per second since the bar started."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f}/s", style="progress.data.speed")


class RunProgress:
    """done/total, rate, ETA, retries and cost so far - on stderr, never stdout."""

    def __init__(self, total: int, description: str, client: LLMClient, *, enabled: bool = True) -> None:
        self.client = client
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("retries {task.fields[retries]}"),
            TextColumn("{task.fields[cost]}"),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, retries=0, cost=self._cost())
        self._pending = 0
        self._last = 0.0

    def _cost(self) -> str:
        if not self.client.price_known:
            return "$0 (price unknown)"
        return f"${self.client.stats.cost_usd:.4f}"

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done; the bar itself is updated at most every 50 ms (cheap per record)."""
        self._pending += n
        now = time.monotonic()
        if now - self._last >= 0.05:
            self._flush(now)

    def _flush(self, now: float) -> None:
        self._progress.update(self._task, advance=self._pending, retries=self.client.stats.retries, cost=self._cost())
        self._pending, self._last = 0, now

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._flush(time.monotonic())
        self._progress.stop()


def usage_line(stats: ClientStats, client: LLMClient) -> str:
    """One line of totals: requests, cache hits, retries, tokens, cost."""
    if client.price_known:
        cost = f"cost ${stats.cost_usd:.4f} this run"
    else:
        cost = f"cost $0 (price unknown for {client.model})"
    return (
        f"requests {stats.requests:,} sent, {stats.cache_hits:,} from cache, {stats.retries:,} retries; "
        f"tokens {stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} completion; {cost}"
    )
