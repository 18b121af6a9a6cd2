"""pool-inspect: which tokens ATA pooling weights."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mghkit.cli.app import app
from mghkit.errors import UsageError


@app.command("pool-inspect")
def pool_inspect(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to inspect; none or '-' reads one text a line from stdin.", show_default=False),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model: 'local' (embedded SmolLM2-135M), a run dir, HF id or dir.")
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

    from mghkit import pool_inspect as pi
    from mghkit.cli.setup import setup_model
    from mghkit.errors import RuntimeFailure

    err = Console(stderr=True)
    if not model.strip():
        raise UsageError(f"--model: expected a model name or dir, got {model!r}")
    items = [] if check else read_texts(texts or [], sys.stdin)
    if html is not None:
        check_html_path(html)
    setup_model()
    if model == "local":
        err.print(
            "mghkit: model 'local' (the embedded SmolLM2-135M-Instruct); choose another with --model",
            highlight=False,
            soft_wrap=True,
        )
    encoder = pi.load_for_inspect(model, pooling, ata_direction, ata_sign, causal, max_length)
    if check:
        from mghkit.model.selftest import bidirectional_selftest

        result = bidirectional_selftest(encoder)
        if not result.bidirectional:
            raise RuntimeFailure(result.message())  # exit 1
        print(result.message())
        return
    docs = pi.inspect_texts(encoder, items, instruction)
    if html is not None:
        write_html(html, pi.render_html(docs, pooling, model, top))
        err.print(f"mghkit: wrote {html}", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(pi.to_document(docs, encoder, model), ensure_ascii=False))
    else:
        Console(highlight=False).print(*pi.render_rich(docs, pooling, top))


def read_texts(args: list[str], stdin: Any) -> list[str]:
    """The texts: the arguments, or (none given, or '-') one text per non-blank stdin line.
    Text that is not UTF-8 (an argument, or a stdin line) is a usage error naming it."""
    if args and list(args) != ["-"]:
        for i, text in enumerate(args, 1):
            if not text.strip():
                raise UsageError(f"text {i}: empty text (give at least one non-blank text)")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # undecodable argv bytes arrive as lone surrogates
                raise UsageError(f"text {i}: not valid UTF-8") from None
        return list(args)
    if stdin is None or stdin.isatty():
        raise UsageError("no text given: pass texts as arguments or pipe them on stdin, one a line")
    texts = []
    for lineno, raw in enumerate(getattr(stdin, "buffer", stdin), 1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8") if isinstance(raw, bytes) else raw
            line.encode("utf-8")  # a text stream decoded with surrogateescape hides bad bytes
        except UnicodeError:
            raise UsageError(f"<stdin>:{lineno}: not valid UTF-8") from None
        if line.strip():
            texts.append(line.rstrip("\r\n"))
    if not texts:
        raise UsageError("<stdin>: no text given (all lines blank)")
    return texts


def check_html_path(path: Path) -> None:
    """A bad --html path is the user's mistake (exit 2), found before the model loads; a folder
    this process may not write is an OSError naming the path (exit 1)."""
    from mghkit.files import is_special

    if is_special(path):
        return
    if path.is_dir() or not path.parent.is_dir():
        raise UsageError(f"{path}: cannot write the HTML file (a directory, or its folder does not exist)")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, f"{os.strerror(errno.EACCES)} (folder {path.parent} is not writable)", str(path))


def write_html(path: Path, content: str) -> None:
    """The page in one piece (a device or FIFO: straight through). A full disk or a folder made
    read-only meanwhile: an OSError naming ``path``, which the CLI reports in one line (exit 1)."""
    from mghkit.cli import DISK_ERRORS
    from mghkit.files import write_text_atomic

    try:
        write_text_atomic(path, content)
    except OSError as e:
        if e.errno not in DISK_ERRORS:  # the folder went away meanwhile, a name too long...
            raise UsageError(f"{path}: cannot write the HTML file: {e.strerror or e}") from e
        if not e.filename:
            e.filename = str(path)
        raise
