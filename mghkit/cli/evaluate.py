"""eval: local BEIR / STS data and MTEB tasks."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from mghkit.cli.app import Seed, app, csv
from mghkit.errors import UsageError


@app.command("eval")
def eval_(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model to evaluate (repeatable): a run dir, a HF id or dir, a sentence-transformers dir, 'local' (the embedded decoder, the default) or 'minilm' (the embedded all-MiniLM-L6-v2).",
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated poolings to compare on each decoder, e.g. mean,last,ata (default: the model's own)."
        ),
    ] = None,
    beir: Annotated[
        list[str] | None,
        typer.Option(
            help="Local BEIR dir (corpus.jsonl, queries.jsonl, qrels/test.tsv); repeatable. Main score nDCG@10."
        ),
    ] = None,
    sts: Annotated[
        list[str] | None,
        typer.Option(
            help="Local STS JSONL file ({sentence1, sentence2, score}); repeatable. Main score cosine Spearman."
        ),
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated MTEB task names, e.g. STSBenchmark,SciFact (their data must be fetchable or cached)."
        ),
    ] = None,
    benchmark: Annotated[str | None, typer.Option(help='An MTEB benchmark, e.g. "MTEB(eng, v1)".')] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="Add a baseline row for retrieval tasks: bm25.")] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="Write the full report (all metrics, versions, settings) as JSON here, or - for stdout."
        ),
    ] = None,
    output_folder: Annotated[
        str | None,
        typer.Option(
            help="Also write mteb's own results layout here (results/<name>/<revision>/<task>.json), "
            "readable with mteb.ResultCache(DIR).load_results()."
        ),
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Max tokens per text (default: the model's, 512 for decoders).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 8,
    max_queries: Annotated[
        int | None, typer.Option(help="Keep this many retrieval queries (seeded, deterministic).")
    ] = None,
    max_docs: Annotated[
        int | None,
        typer.Option(help="Cut each corpus to this many documents; judged documents of kept queries always stay."),
    ] = None,
    max_pairs: Annotated[int | None, typer.Option(help="Keep this many STS pairs (seeded, deterministic).")] = None,
    instruction: Annotated[
        str | None,
        typer.Option(help="Query instruction for retrieval tasks (E5 style; '' for none). Default: per task."),
    ] = None,
    sts_instruction: Annotated[
        str, typer.Option(help="Instruction for both sides of STS pairs ('' for none).")
    ] = "Retrieve semantically similar text.",
    causal: Annotated[bool, typer.Option("--causal", help="Causal attention instead of bidirectional.")] = False,
    dtype: Annotated[str | None, typer.Option(help="Decoder weights dtype: float32, bfloat16, float16.")] = None,
    device: Annotated[
        str | None,
        typer.Option(help="Torch device for the models, e.g. cuda:1 (default: cuda when present, else cpu)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's; 1 is often faster on a busy machine).")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the on-disk embedding cache.")
    ] = False,
    cache_dir: Annotated[
        str | None, typer.Option(help="Cache root (default $MGHKIT_CACHE_DIR or ~/.cache/mghkit).")
    ] = None,
    seed: Seed = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no tables on stderr.")] = False,
) -> None:
    """Evaluate embedders on local BEIR / STS data and MTEB tasks (scored by mteb); compare rows in one table.

    With no task option it runs the bundled offline suite: man-pages retrieval and SimLex-999.
    A task whose data cannot be fetched fails with one line naming it (exit 1); bad local data exits 2.
    """
    from mghkit.cli.setup import setup_eval
    from mghkit.evaluation.report import ReportNotWritten
    from mghkit.evaluation.run import evaluate as _evaluate
    from mghkit.files import is_special

    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    for value in model or []:
        if not csv(value):  # `--model ''`: not a silent fallback to the default model
            raise UsageError(f"--model: expected a model name or dir, got {value!r}")
    setup_eval(threads=threads, cache_dir=cache_dir)
    bar = _progress_bar(enabled=not quiet and sys.stderr.isatty())
    try:
        report = _evaluate(
            csv(model) or None,
            poolings=csv(pooling) or None,
            beir=beir or [],
            sts=sts or [],
            tasks=csv(tasks),
            benchmark=benchmark,
            baselines=csv(baseline),
            out=out,
            instruction=instruction,
            sts_instruction=sts_instruction,
            max_length=max_length,
            batch_size=batch_size,
            max_queries=max_queries,
            max_docs=max_docs,
            max_pairs=max_pairs,
            seed=seed,
            causal=causal,
            dtype=dtype,
            device=device,
            cache=not no_cache,
            cache_dir=cache_dir,
            output_folder=output_folder,
            progress=bar.update if bar else None,
        )
    except ReportNotWritten as e:  # every row is done: show the tables, then the one error line
        if not quiet:
            _print_tables(e.report)
        raise
    finally:
        if bar:
            bar.stop()
    if quiet:
        return
    console = _print_tables(report)
    for path in (out, output_folder):
        if path and not is_special(path):
            console.print(f"mghkit: wrote {path}", markup=False)


class _Bar:
    """A rich progress bar on stderr following ``progress(description, done, total)`` calls."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("encoding {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)  # fmt: skip
        self.task: Any = None
        self.progress.start()

    def update(self, description: str, done: int, total: int) -> None:
        if self.task is None or done == 0:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(description, total=total)
        self.progress.update(self.task, completed=done)

    def stop(self) -> None:
        self.progress.stop()


def _progress_bar(*, enabled: bool) -> _Bar | None:
    return _Bar() if enabled else None


def _print_tables(report: Any) -> Any:
    from rich.console import Console

    from mghkit.evaluation.report import tables

    console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)
    for table in tables(report):
        console.print(table)
    return console
