"""brainstorm and generate: the synthesis commands (docs/method.md section 1).

Each parses its options, sets the process up (:func:`mghkit.cli.setup.setup_synth`), calls the
public function (:func:`mghkit.synth.brainstorm.brainstorm`, :func:`mghkit.synth.generate.generate`)
and renders the stats it returns as lines on stderr.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mghkit.cli.app import In, Out, Quiet, Seed, app
from mghkit.cli.setup import setup_synth
from mghkit.errors import UsageError

if TYPE_CHECKING:
    from mghkit.synth.report import Estimate, Usage

# ----------------------------------------------------------------------------- synthesis
Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="LiteLLM model name (gpt-4o, openai/NAME, anthropic/..., ollama/...), or 'local' for the embedded offline LLM.",
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
Timeout = Annotated[
    float | None,
    typer.Option(
        help="Seconds before one request times out [default: 600 with --api-base, else 120]. A timed-out request is "
        "retried, except against --api-base: a self-hosted server keeps working on it, so it is not resent "
        "(raise --timeout or lower --concurrency instead).",
        show_default=False,
    ),
]
MaxTokens = Annotated[
    int | None,
    typer.Option(
        help="Most tokens in one reply [default: 4096; 1024 for --model local]. A server's context must hold the "
        "prompt plus this on servers that reserve it (vLLM).",
        show_default=False,
    ),
]
Temperature = Annotated[
    float | None,
    typer.Option(help="Sampling temperature, 0-2 [default: 1.0; about 0.5 for --model local].", show_default=False),
]
ExtraBody = Annotated[
    str | None,
    typer.Option(
        help="JSON object added to every request body as it is (LiteLLM extra_body), e.g. '{\"top_k\": 40}' or "
        '\'{"chat_template_kwargs": {"enable_thinking": false}}\'.',
        show_default=False,
    ),
]
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
Batch = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Send the requests through the provider's batch API (about half the price, answers within 24 h): "
        "request files are uploaded, polled and downloaded; a rerun after any interruption picks up the same "
        "batches (nothing is submitted twice). See docs/synthesis.md.",
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(help="Most requests in one batch file [default: the provider's limit, 50,000 for OpenAI].",
                 show_default=False),
]  # fmt: skip
PollInterval = Annotated[float, typer.Option(help="Seconds between two polls of a batch's status (--batch).")]
Deployments = Annotated[
    str | None,
    typer.Option(
        help="A LiteLLM Router model list (YAML or JSON): several deployments of --model (endpoints, keys by "
        "environment variable name, rpm/tpm), load-balanced with cooldown and fallbacks, online and with --batch.",
        show_default=False,
    ),
]
BatchStatus = Annotated[
    bool,
    typer.Option("--batch-status", help="Show the batch jobs recorded in the cache dir and exit (sends nothing)."),
]


def _extra_body(text: str | None) -> dict[str, Any] | None:
    """--extra-body as a dict, or a one-line UsageError (exit 2)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--extra-body: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise UsageError("--extra-body: expected a JSON object, e.g. '{\"top_k\": 40}'")
    return value


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    timeout: Timeout = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    extra_body: ExtraBody = None,
    max_retries: MaxRetries = 5,
    cache_dir: CacheDir = None,
    batch: Batch = False,
    batch_size: BatchSize = None,
    poll_interval: PollInterval = 30.0,
    deployments: Deployments = None,
    quiet: Quiet = False,
) -> None:
    """Stage 1: an LLM brainstorms retrieval tasks of five kinds (Task records)."""
    from mghkit.paths import cache_dir as cache_root

    cache_root(cache_dir, create=False)  # a --cache-dir that is a file: exit 2 before LiteLLM is imported
    body = _extra_body(extra_body)
    setup_synth(model)
    from mghkit.synth.brainstorm import brainstorm as run

    tasks = run(model, n_tasks=n_tasks, kinds=kinds, per_call=per_call, seed=seed, out=out, concurrency=concurrency,
                rpm=rpm, tpm=tpm, max_budget=max_budget, dry_run=dry_run, api_base=api_base, api_key_env=api_key_env,
                timeout=timeout, max_tokens=max_tokens, temperature=temperature, extra_body=body,
                max_retries=max_retries, cache_dir=cache_dir, progress=not quiet, check=False, batch=batch,
                batch_size=batch_size, poll_interval=poll_interval, deployments=deployments)  # fmt: skip
    stats = tasks.stats
    say = (lambda line: None) if quiet else _say
    if stats.estimate is not None:
        _say(_estimate_line(f"dry run: at least {stats.estimate.requests} calls", stats.estimate, cost_digits=4))
        return
    if stats.stop is None:
        made = ", ".join(f"{k} {v}" for k, v in stats.made.items())
        where = f" -> {out}" if out != "-" else ""
        say(f"brainstorm: {len(tasks)} tasks ({made}){where}; {stats.duplicates} near-duplicates removed; "
             f"{stats.calls} calls, {stats.unusable_replies} unusable replies, {stats.bad_items} bad items")  # fmt: skip
        if stats.shortfall:
            _say(f"brainstorm: warning: only {len(tasks)} of {n_tasks} tasks after {stats.calls} calls "
                 f"({stats.first_problem or 'the model kept repeating itself'}); try another --seed or --per-call")  # fmt: skip
    say(_usage_line(stats.usage))
    tasks.check()


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
    timeout: Timeout = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    extra_body: ExtraBody = None,
    max_retries: MaxRetries = 5,
    cache_dir: CacheDir = None,
    batch: Batch = False,
    batch_size: BatchSize = None,
    poll_interval: PollInterval = 30.0,
    deployments: Deployments = None,
    batch_status: BatchStatus = False,
    quiet: Quiet = False,
) -> None:
    """Stage 2: for each task, a query, a positive and four graded hard negatives.

    Results are appended as they arrive; rerunning the same command after any interruption
    finishes the job (resume by id; cached answers are not paid for twice)."""
    from mghkit.jsonl import check_distinct_outputs
    from mghkit.paths import cache_dir as cache_root
    from mghkit.synth.generate import generate as run
    from mghkit.synth.generate import load_tasks

    if batch_status:
        _show_batches(cache_dir)
        return

    check_distinct_outputs(tasks, out=out, rejects=rejects)
    task_list = load_tasks(tasks)  # a bad file stops here (exit 2): nothing sent, LiteLLM not even imported
    cache_root(cache_dir, create=False)  # so does a --cache-dir that is a file
    body = _extra_body(extra_body)
    setup_synth(model)
    result = run(task_list, model, out=out, rejects=rejects, per_task=per_task, seed=seed, concurrency=concurrency,
                 rpm=rpm, tpm=tpm, max_budget=max_budget, dry_run=dry_run, api_base=api_base,
                 api_key_env=api_key_env, timeout=timeout, max_tokens=max_tokens, temperature=temperature,
                 extra_body=body, max_retries=max_retries, cache_dir=cache_dir,
                 progress=not quiet, collect=False, check=False, batch=batch, batch_size=batch_size,
                 poll_interval=poll_interval, deployments=deployments)  # fmt: skip
    stats = result.stats
    say = (lambda line: None) if quiet else _say
    if stats.estimate is not None:
        head = (f"dry run: {stats.estimate.requests:,} requests ({stats.planned:,} planned, "
                f"{stats.resumed:,} already done)")  # fmt: skip
        e = stats.estimate
        if e.batch_files is not None:
            head += f"; batch plan: {e.batch_files:,} request file{'s' * (e.batch_files != 1)} ({e.batch_bytes / 1e6:,.1f} MB), priced at the batch price"
        _say(_estimate_line(head, e, cost_digits=2, per_million=True))
        return
    parts = [f"generate: {stats.written:,} new triplets" + (f" -> {out}" if out != "-" else "")]
    if stats.resumed:
        parts.append(f"{stats.resumed:,} were already done")
    if stats.rejected:
        dest = f" -> {rejects}" if rejects else " (not kept: pass --rejects FILE to keep them)"
        top = ", ".join(f"{k} x{v}" for k, v in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:3])
        parts.append(f"{stats.rejected:,} rejected{dest} [{top}]")
    if stats.reasked:
        parts.append(f"{stats.reasked:,} needed a re-ask")
    if stats.undone:
        parts.append(f"{stats.undone:,} not done (rerun to finish)")
    say("; ".join(parts))
    say(_usage_line(stats.usage, stats.written))
    result.check()


def _usage_line(usage: Usage, kept: int | None = None) -> str:
    """One line of totals: requests, cache hits, retries, tokens (cached input among them), cost,
    and with ``kept`` triplets the cost per 1,000 of them."""
    s = usage.client
    cost = f"cost ${s.cost_usd:.4f} this run" if usage.price_known else f"cost $0 (price unknown for {usage.model})"
    if kept and usage.price_known:
        cost += f" (${s.cost_usd / kept * 1000:.2f} per 1,000 kept triplets)"
    cached = f" ({s.cached_tokens:,} prompt tokens from the provider's prompt cache)" if s.cached_tokens else ""
    return (f"requests {s.requests:,} sent, {s.cache_hits:,} from cache, {s.retries:,} retries; "
            f"tokens {s.prompt_tokens:,} prompt + {s.completion_tokens:,} completion{cached}; {cost}")  # fmt: skip


def _show_batches(cache_dir: str | None) -> None:
    """--batch-status: one line per recorded batch submission, on stdout."""
    from mghkit import batch_status

    subs = batch_status(cache_dir)
    if not subs:
        _say("no batch jobs recorded in this cache dir")
        return
    for s in subs:
        reqs = ", ".join(f"{k} {v:,}" for k, v in sorted(s["requests"].items()))
        print(f"{s['sub']}  {s['batch_id'] or '(not created yet)'}  {s['model']}  {s['status'] or s['state']}  "
              f"{s['n']:,} requests ({reqs})", flush=True)  # fmt: skip


def _estimate_line(head: str, e: Estimate, *, cost_digits: int, per_million: bool = False) -> str:
    line = f"{head}; about {e.prompt_tokens:,} prompt + {e.completion_tokens:,} completion tokens"
    if e.cost_usd is not None and e.price_in is not None and e.price_out is not None:
        line += f"; estimated cost ${e.cost_usd:.{cost_digits}f} at {e.model} prices"
        if per_million:
            line += f" (${e.price_in * 1e6:.2f} in / ${e.price_out * 1e6:.2f} out per 1M tokens)"
    else:
        line += f"; cost unknown (no price for {e.model} in LiteLLM's table)"
    return line + "; no request was sent"
