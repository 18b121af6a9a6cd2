"""validate and curriculum: the data commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mghkit.cli.app import In, Out, Seed, app
from mghkit.cli.setup import setup_model

if TYPE_CHECKING:
    from mghkit.schedules import CurriculumStats, Schedule
    from mghkit.validate import Report


@app.command()
def validate(
    triplets: In,
    out: Out = "-",
    rejects: Annotated[
        str | None, typer.Option(help="Write rejected lines here, each with its reasons (JSONL).")
    ] = None,
    report: Annotated[
        str | None, typer.Option(help="Write a JSON report: counts per reason, settings, level statistics.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first problem with exit 2 instead of rejecting.")
    ] = False,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="Reject exact and near-duplicate queries (first kept).")
    ] = True,
    dedup_threshold: Annotated[
        float, typer.Option(help="Near-duplicate query threshold: estimated Jaccard of character 5-grams, in (0, 1].")
    ] = 0.8,
    pair_threshold: Annotated[
        float,
        typer.Option(
            help="A negative counts as near-identical to its query, positive or another negative when lengths, word sets and word bigrams all agree to this ratio (Jaccard)."
        ),
    ] = 0.9,
    min_chars: Annotated[
        int, typer.Option(help="Reject texts shorter than this (characters, after normalisation).")
    ] = 2,
    max_chars: Annotated[int, typer.Option(help="Reject texts longer than this (characters).")] = 20_000,
    check_levels: Annotated[
        bool,
        typer.Option(
            "--check-levels",
            help="Embed query, positive and negatives; reject a negative that outscores the positive; report per-level similarity.",
        ),
    ] = False,
    embedder: Annotated[
        str,
        typer.Option(
            help="With --check-levels: 'local' (all-MiniLM-L6-v2, offline), a sentence-transformers dir, or a cached HF id."
        ),
    ] = "local",
    plot: Annotated[
        str | None, typer.Option(help="With --check-levels: save the per-level similarity distributions as a PNG.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes for the per-record checks (0: none).  [default: one per CPU for files over 8 MB]",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="mghkit (clean triplets) or sentence-transformers (anchor, positive, negative_1 (high) .. negative_4 (low) rows; the instruction inlined in the anchor).",
        ),
    ] = "mghkit",
    cross_positives: Annotated[
        bool,
        typer.Option(
            "--cross-positives/--no-cross-positives",
            help="Reject a negative equal to another record's positive (off for mined files, whose corpus holds the other queries' positives; docs/mining.md).",
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary table on stderr.")] = False,
) -> None:
    """Filter triplets: schema, normalisation, dedup, quality and level checks; rejects kept."""
    from mghkit.validate import validate_triplets

    if check_levels:
        setup_model()
        _quiet_hf_progress()
    result = validate_triplets(
        triplets, out=out, rejects=rejects, report=report, dedup=dedup, dedup_threshold=dedup_threshold,
        pair_threshold=pair_threshold, min_chars=min_chars, max_chars=max_chars, strict=strict,
        check_levels=check_levels, embedder=embedder, plot=plot, workers=workers, keep=False, format=format,
        cross_positives=cross_positives,
    )  # fmt: skip
    if not quiet:
        render_validate(result.report)


@app.command()
def curriculum(
    triplets: In,
    schedule: Annotated[
        str,
        typer.Option(
            help="coarse-to-fine (low -> high), fine-to-coarse, random, fixed:LEVEL (high, medium, medium-low, low), or all (each query's four negatives together, no curriculum)."
        ),
    ] = "coarse-to-fine",
    seed: Seed = 0,
    stages: Annotated[
        int | None,
        typer.Option(
            help="Group the levels into this many consecutive stages (1-4; coarse-to-fine and fine-to-coarse)."
        ),
    ] = None,
    stage_size: Annotated[
        int | None, typer.Option(help="At most this many examples per stage (the first of the shuffled stage).")
    ] = None,
    missing: Annotated[
        str,
        typer.Option(
            help="A record without a level's negative: skip (that level only), drop (the whole record) or error."
        ),
    ] = "skip",
    default_instruction: Annotated[
        str, typer.Option(help="Instruction for records that carry none.")
    ] = "Given a query, retrieve documents that answer the query",
    out: Out = "-",
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="mghkit (Example records) or sentence-transformers (anchor/positive/negative rows, the instruction inlined in the anchor).",
        ),
    ] = "mghkit",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
) -> None:
    """Order training examples coarse-to-fine (easy negatives first) or by an ablation schedule."""
    from mghkit.schedules import curriculum as build

    examples = build(triplets, schedule, seed=seed, stages=stages, stage_size=stage_size, missing=missing,  # type: ignore[arg-type]
                     default_instruction=default_instruction, out=out, format=format)  # type: ignore[call-overload]  # fmt: skip
    if not quiet:
        render_curriculum(examples.schedule, examples.stats)


# ----------------------------------------------------------------------------- rendering (stderr)
def _quiet_hf_progress() -> None:
    """No "Loading weights" progress bar from transformers while the embedder loads."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def render_validate(report: Report) -> None:
    """A rich summary table on stderr: counts per reason, and the level check when it ran."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, highlight=False)
    rate = f", {report.records_per_s:,.0f} records/s" if report.records_per_s else ""
    console.print(f"validate {report.input}: {report.total:,} records, {report.clean:,} clean, "
                  f"{report.rejected:,} rejected ({report.seconds:.1f} s{rate})", soft_wrap=True)  # fmt: skip
    if report.reasons:
        table = Table("reason", "records", "meaning")
        table.columns[1].justify = "right"
        for code, n, meaning in report.reason_rows():
            table.add_row(code, f"{n:,}", meaning)
        console.print(table)
    lv = report.levels
    if lv and lv.get("checked"):
        t2 = Table(title=f"level check: cosine with the query over {lv['checked']:,} records", title_justify="left")
        t2.add_column("")
        for name in lv["mean_cosine"]:
            t2.add_column(name, justify="right")
        t2.add_row("mean", *(f"{v:.3f}" for v in lv["mean_cosine"].values()))
        t2.add_row("std", *(f"{v:.3f}" for v in lv["std_cosine"].values()))
        console.print(t2)
        sp = lv["spearman"]
        console.print(
            f"ordered as labelled (high > medium > medium-low > low): {lv['ordered_share']:.1%}; "
            f"positive above every negative: {lv['positive_first_share']:.1%}; "
            f"Spearman(level, cosine) pooled {sp['pooled']}, per-record mean {sp['per_record_mean']}"
        )


def render_curriculum(plan: Schedule, stats: CurriculumStats) -> None:
    """One line per stage on stderr, and what happened to records missing a level."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    console.print(
        f"curriculum {plan.name}: {stats.records:,} records -> {stats.examples:,} examples in {len(plan.stages)} stage(s)"
    )
    for number, group in enumerate(plan.stages, 1):
        cut = f" (cut {stats.truncated[number]:,} by --stage-size)" if number in stats.truncated else ""
        console.print(f"  stage {number}: {' + '.join(group):<22} {stats.per_stage.get(number, 0):>8,} examples{cut}")
    if stats.missing:
        lacking = ", ".join(f"{lv} {n:,}" for lv, n in stats.missing.items())
        console.print(
            f"  records missing a level: {lacking}" + (f"; {stats.dropped:,} dropped" if stats.dropped else "")
        )
