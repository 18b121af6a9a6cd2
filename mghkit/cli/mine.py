"""mine: graded hard negatives from the user's own (query, positive) pairs and corpus."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mghkit.cli.app import Out, Quiet, Seed, app

if TYPE_CHECKING:
    from mghkit.mining import MineStats


@app.command("mine")
def mine_cmd(
    pairs: Annotated[
        str,
        typer.Argument(
            help="Pairs JSONL {query, positive, instruction?, id?} (- for stdin), or a BEIR dir (queries, qrels, corpus).",
            show_default=False,
        ),
    ],
    out: Out = "-",
    corpus: Annotated[
        str | None,
        typer.Option(
            help="Corpus JSONL {_id?, title?, text} or BEIR dir (default: the BEIR corpus, or the positives)."
        ),
    ] = None,
    retriever: Annotated[str, typer.Option(help="bm25 (bm25s), dense (an embedder) or hybrid (both).")] = "bm25",
    embedder: Annotated[
        str,
        typer.Option(
            help="dense/hybrid: 'local' (all-MiniLM-L6-v2, offline), a sentence-transformers dir or cached id, an mghkit run dir or export."
        ),
    ] = "local",
    bands: Annotated[
        str | None,
        typer.Option(
            help="Level bands LEVEL=LO-HI[@RMIN-RMAX],... : positions among the filtered candidates, optionally a score range relative to the positive (default high=0-3,medium=5-15,medium-low=30-80,low=300-1000)."
        ),
    ] = None,
    margin: Annotated[
        float,
        typer.Option(help="Drop candidates scoring above MARGIN x the positive's score (0: keep them)."),
    ] = 0.95,
    reranker: Annotated[
        str | None,
        typer.Option(
            help="A sentence-transformers CrossEncoder (dir or cached id) re-checking the high band against --margin."
        ),
    ] = None,
    instruction: Annotated[str | None, typer.Option(help="Instruction for pairs that have none.")] = None,
    kind: Annotated[str | None, typer.Option(help="Task kind for the triplets (e.g. short-long).")] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Append to --out and skip ids already there (safe after kill -9)."),
    ] = True,
    workers: Annotated[int, typer.Option(help="Threads scoring BM25 queries.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Pairs retrieved per batch.")] = 64,
    exact_max: Annotated[
        int, typer.Option(help="Dense search is exact up to this many documents, a faiss HNSW index beyond.")
    ] = 200_000,
    max_length: Annotated[int | None, typer.Option(help="Embedder max tokens (default: the model's).")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse corpus embeddings cached on disk.")] = True,
    cache_dir: Annotated[
        str | None, typer.Option(help="Cache root (default: MGHKIT_CACHE_DIR or ~/.cache/mghkit).")
    ] = None,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Mine four graded negatives (high > medium > medium-low > low) for each (query, positive) pair from a corpus,
    dropping likely false negatives; writes triplets that validate, curriculum and train take as they are."""
    from mghkit.cli.setup import setup_model
    from mghkit.errors import UsageError
    from mghkit.files import seekable
    from mghkit.mining import mine as mine_
    from mghkit.mining.grading import parse_bands

    parse_bands(bands)  # a bad spec fails before anything loads
    if retriever != "bm25":
        setup_model()
    if workers < 1 or batch_size < 1:
        raise UsageError("--workers and --batch-size must be >= 1")
    with seekable(pairs) as source, _progress(quiet) as progress:  # stdin is read twice: a temp copy
        result = mine_(source, corpus=corpus, retriever=retriever,
                       embedder=embedder, bands=bands, margin=margin or None, reranker=reranker, seed=seed,
                       instruction=instruction, kind=kind, out=out, resume=resume and out != "-", collect=False,
                       batch_size=batch_size, workers=workers, exact_max=exact_max, cache=cache, cache_dir=cache_dir,
                       max_length=max_length, progress=progress)  # fmt: skip
    if not quiet:
        _summary(result.stats, out)


class _progress:
    """A rich progress bar with ETA on stderr (nothing when quiet or not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("mining"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)  # fmt: skip
        self.task: Any = None

    def __enter__(self) -> Any:
        if self.bar is None:
            return None
        self.bar.start()

        def update(done: int, total: int) -> None:
            if self.task is None:
                self.task = self.bar.add_task("mining", total=total)
            self.bar.update(self.task, completed=done)

        return update

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summary(stats: MineStats, out: str) -> None:
    dropped = ", ".join(f"{k} {v:,}" for k, v in stats.dropped.most_common()) or "none"
    resumed = f" ({stats.resumed:,} already in {out})" if stats.resumed else ""
    search = stats.search + ("" if stats.embeddings_cached is None else
                             f", embeddings {'from the cache' if stats.embeddings_cached else 'computed and cached'}")  # fmt: skip
    rate = stats.mined / stats.seconds if stats.seconds else 0.0
    print(f"mghkit: mined {stats.mined:,} of {stats.pairs:,} pairs{resumed} from {stats.corpus:,} documents "
          f"({stats.retriever}, {search}) in {stats.seconds:.1f} s ({rate:.1f} pairs/s)", file=sys.stderr)  # fmt: skip
    print(f"mghkit: false negatives dropped: {dropped}; bands {', '.join(f'{k} {v}' for k, v in stats.bands.items())}"
          + (f"; {stats.fallbacks:,} score ranges fell back to ranks" if stats.fallbacks else ""), file=sys.stderr)  # fmt: skip
