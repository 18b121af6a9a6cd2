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

try:  # typer >= 0.29 vendors click as typer._click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

from mghkit.errors import MghkitError, NotImplementedYet

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
@app.command()
def brainstorm(
    model: Annotated[str, typer.Option(help="LiteLLM model name, or 'local' for the embedded LLM.")] = "gpt-4o",
    n_tasks: Annotated[int, typer.Option(help="Number of tasks to produce.")] = 40,
    kinds: Annotated[str, typer.Option(help="Comma-separated task kinds: short-long, long-short, long-long, short-short, sts.")] = "short-long,long-short,long-long,short-short,sts",
    seed: Seed = 0,
    out: Out = "-",
) -> None:
    """Stage 1: an LLM brainstorms retrieval tasks of five kinds (Task records)."""
    raise NotImplementedYet("brainstorm")


@app.command()
def generate(
    tasks: In,
    model: Annotated[str, typer.Option(help="LiteLLM model name, or 'local' for the embedded LLM.")] = "gpt-4o",
    out: Out = "-",
) -> None:
    """Stage 2: for each task, a query, a positive and four graded hard negatives."""
    raise NotImplementedYet("generate")


# ----------------------------------------------------------------------------- data
@app.command()
def validate(
    triplets: In,
    out: Out = "-",
) -> None:
    """Filter triplets: schema, normalisation, dedup, quality and level checks; rejects kept."""
    raise NotImplementedYet("validate")


@app.command()
def curriculum(
    triplets: In,
    out: Out = "-",
) -> None:
    """Order training examples coarse-to-fine (easy negatives first) or by an ablation schedule."""
    raise NotImplementedYet("curriculum")


# ----------------------------------------------------------------------------- model
@app.command()
def train(
    data: In,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create.")] = Path("runs/mghkit"),
) -> None:
    """Contrastive (InfoNCE) fine-tuning of a bidirectional decoder, LoRA/QLoRA."""
    raise NotImplementedYet("train")


@app.command("pool-inspect")
def pool_inspect(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to inspect (or read from stdin).", show_default=False)] = None,
) -> None:
    """Show which tokens ATA pooling weights, for any text."""
    raise NotImplementedYet("pool-inspect")


@app.command("eval")
def eval_(
    model: Annotated[list[str] | None, typer.Option(help="Model: a run dir, HF id or dir, or 'local'.")] = None,
) -> None:
    """Evaluate embedders on MTEB tasks and local BEIR / STS data."""
    raise NotImplementedYet("eval")


# ----------------------------------------------------------------------------- entry point
def fail(message: str, code: int = 2) -> NoReturn:
    """Print one error line on stderr and exit."""
    print(f"mghkit: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main() -> None:
    try:
        app(prog_name="mghkit", standalone_mode=False)
    except MghkitError as e:
        fail(str(e), e.exit_code)
    except click_exc.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx else "", file=sys.stderr)
        raise SystemExit(0) from None
    except click_exc.UsageError as e:  # bad option, unknown option value, missing argument
        where = f"{e.ctx.command_path}: " if e.ctx else ""
        fail(where + e.format_message().replace("\n", " "), 2)
    except click_exc.Abort:
        fail("aborted", 130)
    except click_exc.Exit as e:
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # e.g. `mghkit ... | head`
        sys.stderr.close()
        raise SystemExit(0) from None
