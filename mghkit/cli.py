"""The command line: a thin Typer adapter over the library.

Each command parses its options, calls one library function and reports. Heavy libraries
(torch, transformers, litellm, peft, mteb) are imported inside the commands, so ``--help`` is
fast. Errors from the library (``MghkitError``) become one line on stderr and their exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

try:  # typer >= 0.29 vendors click as typer._click (Abort and Exit live in typer.exceptions)
    from typer._click import exceptions as click_exc
    from typer.exceptions import Abort as ClickAbort
    from typer.exceptions import Exit as ClickExit
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]
    from click.exceptions import Abort as ClickAbort  # type: ignore[assignment]
    from click.exceptions import Exit as ClickExit  # type: ignore[assignment]

from mghkit.errors import MghkitError, UsageError

app = typer.Typer(
    name="mghkit",
    help="Multi-granularity hard-negative synthesis and anchor-token-aware pooling for LLM "
    "text embedders (Pan et al., ACL 2025). Commands read and write JSONL; '-' is stdin/stdout.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

In = Annotated[str, typer.Argument(help="Input JSONL file, or - for stdin.", show_default=False)]
Out = Annotated[str, typer.Option("--out", "-o", help="Output JSONL file, or - for stdout.")]
Seed = Annotated[int, typer.Option(help="Seed for every random choice (deterministic).")]


# ----------------------------------------------------------------------------- synthesis
Model = Annotated[
    str,
    typer.Option(
        help="LiteLLM model name (gpt-4o, openai/NAME, anthropic/..., ollama/...), or 'local' for the embedded offline LLM."
    ),
]
ApiBase = Annotated[
    str | None,
    typer.Option(
        help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (use with --model openai/NAME).",
        show_default=False,
    ),
]
ApiKeyEnv = Annotated[
    str | None,
    typer.Option(
        help="Name of the environment variable holding the API key (default: the provider's usual one; none is sent to --api-base unless named).",
        show_default=False,
    ),
]
Timeout = Annotated[float, typer.Option(help="Seconds before one request times out (then it is retried).")]
MaxRetries = Annotated[
    int,
    typer.Option(
        help="Retries per request on 429, 5xx, timeouts and dropped connections (exponential backoff with jitter, Retry-After honoured)."
    ),
]
Rpm = Annotated[float | None, typer.Option(help="Limit requests per minute.", show_default=False)]
Tpm = Annotated[float | None, typer.Option(help="Limit tokens per minute.", show_default=False)]
MaxBudget = Annotated[
    float | None,
    typer.Option(help="Stop cleanly before this run's spending could exceed this many USD.", show_default=False),
]
CacheDir = Annotated[
    str | None,
    typer.Option(
        help="Response cache directory (default: $MGHKIT_CACHE_DIR, else ~/.cache/mghkit).", show_default=False
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Estimate tokens and cost; send no request.")]
Concurrency = Annotated[int, typer.Option(help="Requests in flight at once.")]


def _client_config(
    model: str,
    api_base: str | None,
    api_key_env: str | None,
    timeout: float,
    max_retries: int,
    rpm: float | None,
    tpm: float | None,
    max_budget: float | None,
    cache_dir: str | None,
):  # type: ignore[no-untyped-def]
    from mghkit.llm import ClientConfig

    return ClientConfig(
        model=model,
        api_base=api_base,
        api_key_env=api_key_env,
        timeout=timeout,
        max_retries=max_retries,
        rpm=rpm,
        tpm=tpm,
        max_budget=max_budget,
        cache_dir=cache_dir,
    )


@app.command()
def brainstorm(
    model: Model = "gpt-4o",
    n_tasks: Annotated[int, typer.Option(help="Number of tasks to produce.")] = 40,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated task kinds: short-long, long-short, long-long, short-short, sts.")
    ] = "short-long,long-short,long-long,short-short,sts",
    per_call: Annotated[int, typer.Option(help="Tasks asked for in one LLM call.")] = 5,
    seed: Seed = 0,
    out: Out = "-",
    concurrency: Concurrency = 4,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_budget: MaxBudget = None,
    dry_run: DryRun = False,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    timeout: Timeout = 120.0,
    max_retries: MaxRetries = 5,
    cache_dir: CacheDir = None,
) -> None:
    """Stage 1: an LLM brainstorms retrieval tasks of five kinds (Task records)."""
    from mghkit.synth.brainstorm import BrainstormOptions, run_brainstorm

    config = _client_config(model, api_base, api_key_env, timeout, max_retries, rpm, tpm, max_budget, cache_dir)
    run_brainstorm(
        config,
        BrainstormOptions(
            n_tasks=n_tasks,
            kinds=kinds,
            per_call=per_call,
            seed=seed,
            out=out,
            concurrency=concurrency,
            dry_run=dry_run,
        ),
    )


@app.command()
def generate(
    tasks: In,
    model: Model = "gpt-4o",
    out: Out = "-",
    per_task: Annotated[int, typer.Option(help="Triplets to generate per task.")] = 1,
    rejects: Annotated[
        str | None,
        typer.Option(
            help="Write replies that stayed unusable after one re-ask here (JSONL, with raw text and reason).",
            show_default=False,
        ),
    ] = None,
    seed: Seed = 0,
    concurrency: Concurrency = 8,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_budget: MaxBudget = None,
    dry_run: DryRun = False,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    timeout: Timeout = 120.0,
    max_retries: MaxRetries = 5,
    cache_dir: CacheDir = None,
) -> None:
    """Stage 2: for each task, a query, a positive and four graded hard negatives.

    Results are appended as they arrive; rerunning the same command after any interruption
    finishes the job (resume by id; cached answers are not paid for twice)."""
    from mghkit.synth.generate import RunOptions, run_generate

    config = _client_config(model, api_base, api_key_env, timeout, max_retries, rpm, tpm, max_budget, cache_dir)
    run_generate(
        tasks,
        config,
        RunOptions(out=out, rejects=rejects, per_task=per_task, seed=seed, concurrency=concurrency, dry_run=dry_run),
    )


# ----------------------------------------------------------------------------- data
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary table on stderr.")] = False,
) -> None:
    """Filter triplets: schema, normalisation, dedup, quality and level checks; rejects kept."""
    from contextlib import ExitStack

    from mghkit.jsonl import JsonlWriter, check_distinct_outputs, write_json_atomic
    from mghkit.levels import LevelStats, load_embedder
    from mghkit.validate import ValidateConfig, print_summary, validate_file

    check_distinct_outputs(triplets, out=out, rejects=rejects, report=report, plot=plot)
    for option, value in (("--report", report), ("--plot", plot)):  # fail before any output is written
        if value and value != "-" and (Path(value).is_dir() or not Path(value).resolve().parent.is_dir()):
            raise UsageError(f"{option} {value}: not a writable file path (a directory, or its folder is missing)")
    if plot and not check_levels:
        raise UsageError("--plot needs --check-levels (it draws the per-level similarities)")
    cfg = ValidateConfig(min_chars=min_chars, max_chars=max_chars, dedup=dedup, dedup_threshold=dedup_threshold,
                         pair_threshold=pair_threshold, strict=strict, workers=workers)  # fmt: skip
    embed = load_embedder(embedder) if check_levels else None
    stats = LevelStats() if check_levels else None
    with ExitStack() as stack:
        clean_w = stack.enter_context(JsonlWriter(out))
        reject_w = stack.enter_context(JsonlWriter(rejects)) if rejects else None
        result = validate_file(triplets, clean_w.write, reject_w.write if reject_w else None, cfg,
                               embed=embed, level_stats=stats, json_text=True)  # fmt: skip
    if report:
        write_json_atomic(report, result.to_json())
    if plot and stats is not None:
        stats.plot(plot)
    if not quiet:
        print_summary(result)


@app.command()
def curriculum(
    triplets: In,
    schedule: Annotated[
        str,
        typer.Option(
            help="coarse-to-fine (low -> high), fine-to-coarse, random, or fixed:LEVEL (high, medium, medium-low, low)."
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
) -> None:
    """Order training examples coarse-to-fine (easy negatives first) or by an ablation schedule."""
    from mghkit.curriculum import CurriculumStats, iter_curriculum, parse_schedule, print_summary, read_triplets
    from mghkit.jsonl import JsonlWriter, check_distinct_outputs

    check_distinct_outputs(triplets, out=out)
    plan = parse_schedule(schedule, stages)
    if missing not in ("skip", "drop", "error"):
        raise UsageError(f"--missing {missing!r}: valid: skip, drop, error")
    stats = CurriculumStats()
    examples = iter_curriculum(read_triplets(triplets), plan, seed, stage_size=stage_size, missing=missing,  # type: ignore[arg-type]
                               default_instruction=default_instruction, stats=stats, source=triplets)  # fmt: skip
    with JsonlWriter(out) as writer:
        writer.write_all(examples)
    if not quiet:
        print_summary(plan, stats)


# ----------------------------------------------------------------------------- model
@app.command()
def train(
    data: Annotated[
        str,
        typer.Argument(
            help="Curriculum file (trained in its order), or a validated triplet file (ordered by --schedule).",
            show_default=False,
        ),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Run directory (a model for pool-inspect and eval when done).")
    ] = "runs/mghkit",
    base_model: Annotated[
        str | None,
        typer.Option(
            help="'local' (embedded SmolLM2-135M), a HF id or model dir.  [default: local]", show_default=False
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="'paper': Mistral-7B-Instruct-v0.2, batch 64, grad-accum 8, lr 2e-4, 300 warmup, max length 512. Options given explicitly win."
        ),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Triplet files: coarse-to-fine, fine-to-coarse, random, fixed:<level>.  [default: coarse-to-fine]",
            show_default=False,
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help="ata, mean, last, weighted-mean.  [default: the encoder default, see docs/ata.md]", show_default=False
        ),
    ] = None,
    causal: Annotated[bool, typer.Option("--causal", help="Keep causal attention (default: bidirectional).")] = False,
    max_length: Annotated[
        int | None, typer.Option(help="Max tokens per text.  [default: 256; paper 512]", show_default=False)
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Optimizer steps, split equally between stages.", show_default=False)
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Passes over the curriculum (default 1 when --steps is not given).", show_default=False),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Examples per micro-batch and process.  [default: 8]", show_default=False)
    ] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help="Micro-batches per optimizer step.  [default: 1]", show_default=False)
    ] = None,
    grad_cache: Annotated[
        bool | None,
        typer.Option(
            "--grad-cache/--no-grad-cache",
            help="GradCache: the contrastive batch is batch x grad-accum (about 2x compute).",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.  [default: 2e-4]", show_default=False)] = None,
    warmup_steps: Annotated[
        int | None,
        typer.Option(
            help="Linear warmup steps, then linear decay.  [default: 10% of the steps; paper 300]", show_default=False
        ),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="InfoNCE temperature.  [default: 0.02]", show_default=False)
    ] = None,
    seed: Seed = 0,
    lora: Annotated[
        bool,
        typer.Option(
            "--lora/--no-lora",
            help="LoRA r 16, alpha 32, dropout 0.05 on q,k,v,o,gate,up,down (--no-lora: all weights).",
        ),
    ] = True,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.  [default: 16]", show_default=False)] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha.  [default: 32]", show_default=False)] = None,
    lora_dropout: Annotated[
        float | None, typer.Option(help="LoRA dropout.  [default: 0.05]", show_default=False)
    ] = None,
    lora_dtype: Annotated[
        str | None,
        typer.Option(
            help="float32 (peft's default) or base: LoRA weights in the model's dtype, 1.36x faster for "
            "Mistral-7B bf16 on an H200 (docs/training.md).  [default: float32]",
            show_default=False,
        ),
    ] = None,
    quantize: Annotated[
        str | None, typer.Option(help="4bit or 8bit: QLoRA with bitsandbytes.", show_default=False)
    ] = None,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing", help="Non-reentrant activation checkpointing."
        ),
    ] = True,
    dtype: Annotated[
        str | None,
        typer.Option(help="float32, bfloat16, float16.  [default: bf16 where the hardware has it]", show_default=False),
    ] = None,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps (and at the end).")] = 100,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint, exactly.")
    ] = False,
    stop_after: Annotated[
        int | None,
        typer.Option(help="Stop after this step (with a checkpoint); finish later with --resume.", show_default=False),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Torch device, e.g. cuda, cuda:1, cpu.  [default: cuda when available, else cpu]", show_default=False
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.", show_default=False)] = None,
) -> None:
    """Contrastive (InfoNCE) fine-tuning of a bidirectional decoder, LoRA/QLoRA, curriculum order.

    Several GPUs: torchrun --nproc_per_node N -m mghkit train FILE ... (negatives gathered across processes).
    """
    from mghkit.train.args import make_args

    given = dict(out=out, base_model=base_model, schedule=schedule, pooling=pooling, causal=causal,
                 max_length=max_length, steps=steps, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum,
                 grad_cache=grad_cache, lr=lr, warmup_steps=warmup_steps, temperature=temperature, seed=seed,
                 lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_dtype=lora_dtype,
                 quantize=quantize, gradient_checkpointing=gradient_checkpointing, dtype=dtype, save_every=save_every,
                 resume=resume, stop_after=stop_after, threads=threads, device=device)  # fmt: skip
    args = make_args(data, given, preset=preset)
    from mghkit.train.data import prepare

    prepared = prepare(args)  # the whole file is checked before torch is imported (exit 2 in seconds)
    from mghkit.train.loop import train as run_training

    run_training(args, prepared=prepared)


@app.command("pool-inspect")
def pool_inspect(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to inspect; none or '-' reads one text a line from stdin.", show_default=False),
    ] = None,
    model: Annotated[
        str, typer.Option(help="Model: 'local' (embedded SmolLM2-135M), a run dir, HF id or dir.")
    ] = "local",
    instruction: Annotated[
        str | None, typer.Option(help="Treat the texts as queries with this task instruction (E5 style).")
    ] = None,
    pooling: Annotated[
        str, typer.Option(help="Pooling whose weights colour the tokens: ata, mean, last, weighted-mean.")
    ] = "ata",
    ata_direction: Annotated[
        str | None, typer.Option(help="ATA reading: received (column sums) or given (row sums); default: the model's.")
    ] = None,
    ata_sign: Annotated[
        str | None, typer.Option(help="ATA sign rule: positive (above-uniform attention only) or literal.")
    ] = None,
    causal: Annotated[bool, typer.Option("--causal", help="Causal attention instead of bidirectional.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Run the bidirectional-attention self-test: exit 0 if it holds, 1 if not.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (tokens and weights) instead of the view.")
    ] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML heatmap to this file.")] = None,
    top: Annotated[int, typer.Option(help="Rows in the top-tokens table.", min=1)] = 10,
    max_length: Annotated[int, typer.Option(help="Truncate texts to this many tokens.", min=4)] = 512,
) -> None:
    """Show which tokens ATA pooling weights, for any text."""
    import json

    from rich.console import Console

    from mghkit import inspect as pi
    from mghkit.errors import RuntimeFailure

    err = Console(stderr=True)
    items = [] if check else pi.read_texts(texts or [], sys.stdin)
    if model == "local":
        err.print(
            "mghkit: model 'local' (the embedded SmolLM2-135M-Instruct); choose another with --model",
            highlight=False,
            soft_wrap=True,
        )
    encoder = pi.load_for_inspect(
        model, pooling, ata_direction, ata_sign, causal, max_length, say=lambda m: err.print(m, soft_wrap=True)
    )
    if check:
        from mghkit.model.selftest import bidirectional_selftest

        result = bidirectional_selftest(encoder)
        if not result.bidirectional:
            raise RuntimeFailure(result.message())  # exit 1
        print(result.message())
        return
    docs = pi.inspect_texts(encoder, items, instruction)
    if html is not None:
        pi.write_html(html, pi.render_html(docs, pooling, model, top))
        err.print(f"mghkit: wrote {html}", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(pi.to_document(docs, encoder, model), ensure_ascii=False))
    else:
        Console(highlight=False).print(*pi.render_rich(docs, pooling, top))


def _csv(values: list[str] | str | None) -> list[str]:
    """Repeatable and/or comma-separated option values as one list: ["a,b", "c"] -> [a, b, c]."""
    items = [values] if isinstance(values, str) else values or []
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


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
    device: Annotated[str | None, typer.Option(help="Torch device for the models, e.g. cuda (default: cpu).")] = None,
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
) -> None:
    """Evaluate embedders on local BEIR / STS data and MTEB tasks (scored by mteb); compare rows in one table.

    With no task option it runs the bundled offline suite: man-pages retrieval and SimLex-999.
    A task whose data cannot be fetched fails with one line naming it (exit 1); bad local data exits 2.
    """
    from rich.console import Console

    from mghkit.evaluation.report import check_out, render_table, write_json
    from mghkit.evaluation.run import EvalSpec, run_eval

    console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)
    spec = EvalSpec(models=_csv(model) or ["local"], poolings=_csv(pooling) or None, beir=beir or [], sts=sts or [],
                    tasks=_csv(tasks), benchmark=benchmark, baselines=_csv(baseline), instruction=instruction,
                    sts_instruction=sts_instruction, max_length=max_length, batch_size=batch_size, seed=seed,
                    causal=causal, dtype=dtype, max_queries=max_queries, max_docs=max_docs, max_pairs=max_pairs,
                    device=device, threads=threads, cache=not no_cache, cache_dir=cache_dir)  # fmt: skip
    spec.check()
    if out:
        check_out(out)
    pending = [] if model else ["no --model given: using `local` (the embedded SmolLM2-135M decoder)"]

    def log(line: str) -> None:  # the default-model note waits until the input has been checked
        for note in [*pending, line]:
            console.print(note, markup=False)
        pending.clear()

    save = (lambda report: write_json(report, out)) if out and out != "-" else None
    report = run_eval(spec, log=log, on_row=save)
    render_table(report, console)
    if out:
        write_json(report, out)
        if out != "-":
            console.print(f"wrote {out}")


# ----------------------------------------------------------------------------- entry point
def fail(message: str, code: int = 2) -> NoReturn:
    """Print one error line on stderr and exit."""
    print(f"mghkit: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main() -> None:
    try:
        code = app(prog_name="mghkit", standalone_mode=False)
        if isinstance(code, int) and code:  # a typer.Exit(code) comes back as a return value
            raise SystemExit(code)
    except MghkitError as e:
        fail(str(e), e.exit_code)
    except click_exc.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx else "", file=sys.stderr)
        raise SystemExit(0) from None
    except click_exc.UsageError as e:  # bad option, unknown option value, missing argument
        where = f"{e.ctx.command_path}: " if e.ctx else ""
        fail(where + e.format_message().replace("\n", " "), 2)
    except ClickAbort:
        fail("aborted", 130)
    except ClickExit as e:
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # e.g. `mghkit ... | head`
        sys.stderr.close()
        raise SystemExit(0) from None
