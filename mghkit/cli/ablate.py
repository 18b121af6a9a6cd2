"""ablate: the paper's claims re-measured (docs/ablations.md).

Parses the options, sets the process up (:func:`mghkit.cli.setup.setup_ablate`), calls
:func:`mghkit.ablation.run.ablate` with a progress bar over the grid, and prints the report.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from mghkit.cli.app import Quiet, app, csv
from mghkit.errors import UsageError

# TrainArgs fields the grid sets itself (ablate's own options name them)
GRID_FIELDS = ("data", "out", "schedule", "pooling", "seed", "steps", "resume", "base_model", "preset", "extra")


@app.command()
def ablate(
    triplets: Annotated[
        str | None,
        typer.Argument(
            help="Validated triplet file, ordered by each cell's schedule. Left out: the bundled man-pages "
            "split (training triplets mined with mghkit.mine, held-out queries as the BEIR set).",
            show_default=False,
        ),
    ] = None,
    eval_beir: Annotated[
        list[str] | None, typer.Option(help="Held-out BEIR dir (repeatable); must share no query with TRIPLETS.")
    ] = None,
    eval_sts: Annotated[list[str] | None, typer.Option(help="Held-out STS JSONL file (repeatable).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated MTEB task names (data cached).")] = None,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Folder of the cells (run dirs) and the report.")
    ] = "ablations",
    base_model: Annotated[
        str | None,
        typer.Option(
            help="'minilm' (the embedded all-MiniLM-L6-v2 encoder, the default), 'local' (the embedded "
            "SmolLM2-135M decoder), a HF id, a model dir or a sentence-transformers dir.",
            show_default=False,
        ),
    ] = None,
    schedules: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated rows: coarse-to-fine, fine-to-coarse, random, fixed:<level>, all. "
            "Default without grid options: coarse-to-fine,fine-to-coarse,random,all,fixed:high; with: all of them.",
            show_default=False,
        ),
    ] = None,
    poolings: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: mean, last, weighted-mean, ata (decoders only). Default without grid "
            "options: mean (encoder) or mean,ata (decoder); with: all that apply.",
            show_default=False,
        ),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(
            help="Rows in one option: 'SCHEDULES x POOLINGS', e.g. 'coarse-to-fine,random x mean,ata'.",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(help="Seeds per row (data order and LoRA init). Default: 3 without grid options, else 1."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps per cell.")] = 30,
    max_cells: Annotated[int, typer.Option(help="Refuse a grid with more cells than this (before training).")] = 64,
    instruction: Annotated[
        str | None, typer.Option(help="Query instruction for retrieval scoring (default: per task).")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per text, training and scoring.")] = 128,
    batch_size: Annotated[int | None, typer.Option(help="Training examples per micro-batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Activation checkpointing."),
    ] = None,
    train_option: Annotated[
        list[str] | None,
        typer.Option(
            help="Any other train option for every cell, KEY=VALUE with mghkit train's names "
            "(e.g. temperature=0.05, grad_accum=2); repeatable.",
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="A run's training_args.json every cell starts from (options given win).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    quiet: Quiet = False,
) -> None:
    """Train a grid of (schedule x pooling x seed) cells on one base model and score them on held-out data.

    Each cell is a run dir under OUT/cells/ (eval, pool-inspect and export load it); a rerun skips
    finished cells and resumes an interrupted one. The report (OUT/ablation.json, .md, .png): per
    metric each row's mean +- 95% interval over seeds, its paired difference against coarse-to-fine,
    the ordering, and whether the paper's claims hold.
    """
    from mghkit.ablation.run import ablate as _ablate
    from mghkit.cli.setup import setup_ablate

    if grid is not None:
        if schedules is not None or poolings is not None:
            raise UsageError("--grid: give either --grid or --schedules/--poolings, not both")
        schedules, poolings = _parse_grid(grid)
    options = _options(train_option)
    options.update({k: v for k, v in {"batch_size": batch_size, "lr": lr, "lora_r": lora_r,
                                       "gradient_checkpointing": gradient_checkpointing}.items() if v is not None})  # fmt: skip
    setup_ablate(threads=threads)
    bar = _Bar() if not quiet and sys.stderr.isatty() else None
    try:
        report = _ablate(
            triplets, out=out, eval_beir=eval_beir or [], eval_sts=eval_sts or [], tasks=csv(tasks),
            base_model=base_model, schedules=schedules, poolings=poolings, seeds=seeds, steps=steps,
            max_cells=max_cells, instruction=instruction, max_length=max_length, train_options=options,
            config=config, threads=threads, progress=bar.update if bar else (None if quiet else _line),
        )  # fmt: skip
    finally:
        if bar:
            bar.stop()
    if quiet:
        return
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)
    console.print(Markdown(report.markdown()))
    console.print(f"mghkit: wrote {out}/ablation.json, ablation.md, ablation.png", markup=False)


def _parse_grid(text: str) -> tuple[str, str]:
    """``'SCHEDULES x POOLINGS'`` -> (schedules, poolings).

    >>> _parse_grid("coarse-to-fine,random x mean,ata")
    ('coarse-to-fine,random', 'mean,ata')
    """
    parts = [p.strip() for p in text.split(" x ")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--grid {text!r}: expected 'SCHEDULES x POOLINGS', e.g. 'coarse-to-fine,random x mean,ata'")
    return parts[0], parts[1]


def _options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` train options (values read as JSON when they parse, else as text), each
    checked against mghkit train's fields."""
    import dataclasses

    from mghkit.train.args import TrainArgs

    fields = {f.name for f in dataclasses.fields(TrainArgs)} - set(GRID_FIELDS)
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or key not in fields:
            valid = ", ".join(sorted(fields))
            raise UsageError(f"--train-option {item!r}: expected KEY=VALUE with KEY one of: {valid}")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def _line(description: str, done: int, total: int) -> None:
    print(f"mghkit: ablate: [{done}/{total}] {description}", file=sys.stderr, flush=True)


class _Bar:
    """A rich progress bar over the grid's cells (the base row counts as one), with ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("ablate {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))  # fmt: skip
        self.task: Any = None
        self.progress.start()

    def update(self, description: str, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(description, total=total)
        self.progress.update(self.task, completed=done, description=description)

    def stop(self) -> None:
        self.progress.stop()
