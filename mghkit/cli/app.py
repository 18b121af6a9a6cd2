"""The Typer application and the option types shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="mghkit",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

In = Annotated[str, typer.Argument(help="Input JSONL file, or - for stdin.", show_default=False)]
Out = Annotated[str, typer.Option("--out", "-o", help="Output JSONL file, or - for stdout.")]
Seed = Annotated[int, typer.Option(help="Seed for every random choice (deterministic).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary on stderr (warnings stay).")]


def csv(values: list[str] | str | None) -> list[str]:
    """Repeatable and/or comma-separated option values as one list: ["a,b", "c"] -> [a, b, c].

    >>> csv(["a,b", " c "])
    ['a', 'b', 'c']
    """
    items = [values] if isinstance(values, str) else values or []
    return [v.strip() for item in items for v in item.split(",") if v.strip()]
