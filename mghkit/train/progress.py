"""The progress display on stderr: step, stage, loss, lr, tokens/s, ETA.

On a terminal: a rich progress bar redrawn in place. Otherwise (logs, CI, a pipe): one plain
line every few steps, so a log file shows the run without control characters.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, console: Console, total: int, start: int = 0, enabled: bool = True) -> None:
        self.console, self.total, self.start, self.enabled = console, total, start, enabled
        self.live = enabled and console.is_terminal
        self.every = max(1, total // 50)
        self._t0 = time.perf_counter()
        self._bar: RichProgress | None = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.live:
            self._bar = RichProgress(
                TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(bar_width=24),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=False,
            )  # fmt: skip
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        info = (f"stage {row['stage']} ({row['level']})  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
                f"{row['tokens_per_s']:,.0f} tok/s")  # fmt: skip
        if self._bar is not None:
            self._bar.update(self._task, completed=row["step"], info=info)
            return
        step = row["step"]
        if step % self.every and step != self.total and step != self.start + 1:
            return
        done = step - self.start
        eta = (time.perf_counter() - self._t0) / max(1, done) * (self.total - step)
        self.console.print(f"step {step}/{self.total}  {info}  ETA {_clock(eta)}", highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    """
    >>> _clock(3725)
    '1:02:05'
    """
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
