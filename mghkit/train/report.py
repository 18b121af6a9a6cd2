"""Where a run reports its progress besides ``metrics.jsonl`` and ``loss.png``: ``--report-to``
``tensorboard`` (event files in ``RUN/tensorboard/``) or ``trackio`` (a local trackio project,
optional package), as Hugging Face trainers do. Process 0 reports; every step logs the loss, the
learning rate, tokens/s, examples/s, the curriculum stage and the padding fraction.

``check_report_to`` needs no heavy import (``TrainArgs.check`` calls it before torch loads).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Protocol

from mghkit.errors import UsageError

log = logging.getLogger(__name__)

REPORT_TO = ("none", "tensorboard", "trackio")
TENSORBOARD_DIR = "tensorboard"
# metrics.jsonl field -> the scalar's name (HF trainers' train/ prefix)
SCALARS = {"loss": "train/loss", "lr": "train/learning_rate", "tokens_per_s": "train/tokens_per_s",
           "examples_per_s": "train/examples_per_s", "stage": "train/stage", "padding": "train/padding_fraction"}  # fmt: skip


def check_report_to(value: str) -> None:
    """A known reporter whose package is installed; else one line.

    >>> check_report_to("none")
    >>> check_report_to("wandb")
    Traceback (most recent call last):
    mghkit.errors.UsageError: unknown --report-to 'wandb' (choose from none, tensorboard, trackio)
    """
    if value not in REPORT_TO:
        raise UsageError(f"unknown --report-to {value!r} (choose from {', '.join(REPORT_TO)})")
    package = {"tensorboard": "tensorboard", "trackio": "trackio"}.get(value)
    if package and importlib.util.find_spec(package) is None:
        raise UsageError(f"--report-to {value}: the {package} package is not installed (pip install {package}), "
                         "or choose another (none, tensorboard, trackio)")  # fmt: skip


class Reporter(Protocol):
    def log(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class NoReporter:
    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardReporter:
    """Scalars through torch's ``SummaryWriter``; a resumed run purges the events after its start."""

    def __init__(self, out: Path, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / TENSORBOARD_DIR), purge_step=start + 1 if start else None)

    def log(self, row: dict[str, Any]) -> None:
        for key, tag in SCALARS.items():
            if key in row:
                self.writer.add_scalar(tag, float(row[key]), global_step=int(row["step"]))

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class TrackioReporter:
    """A trackio run (project ``mghkit``, named after the run dir, the training arguments as config)."""

    def __init__(self, out: Path, config: dict[str, Any], start: int) -> None:
        import trackio

        self.trackio = trackio
        trackio.init(project="mghkit", name=out.resolve().name, config=config, resume="allow" if start else "never")

    def log(self, row: dict[str, Any]) -> None:
        self.trackio.log({tag: float(row[key]) for key, tag in SCALARS.items() if key in row}, step=int(row["step"]))

    def close(self) -> None:
        self.trackio.finish()


def open_reporter(kind: str, out: Path, *, config: dict[str, Any], start: int = 0) -> Reporter:
    """The reporter for ``--report-to kind`` (``none``: one that does nothing)."""
    check_report_to(kind)
    if kind == "tensorboard":
        return TensorBoardReporter(out, start)
    if kind == "trackio":
        return TrackioReporter(out, config, start)
    return NoReporter()
