"""export: a run dir as a sentence-transformers or plain transformers model dir."""

from __future__ import annotations

from typing import Annotated

import typer

from mghkit.cli.app import app


@app.command("export")
def export_(
    run: Annotated[str, typer.Argument(help="Run dir written by 'mghkit train'.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="New (or empty) directory to write.", show_default=False)],
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="sentence-transformers (modules, prompts, pooling) or hf (plain transformers)."
        ),
    ] = "sentence-transformers",
    no_merge: Annotated[
        bool, typer.Option("--no-merge", help="Keep the LoRA adapter in adapter/ beside the base weights.")
    ] = False,
    instruction: Annotated[
        str | None, typer.Option(help="Task of the saved query prompt (default: a generic retrieval instruction).")
    ] = None,
) -> None:
    """Export a trained run so other tools load it: SentenceTransformer(DIR, trust_remote_code=True) gives
    mghkit's vectors; AutoModel.from_pretrained(DIR) the bidirectional weights; README.md is a model card."""
    from mghkit.cli.setup import setup_model
    from mghkit.exporting.run import check_export_args, export

    check_export_args(run, format, out)  # before any model loads
    setup_model()
    result = export(run, format=format, out=out, merge=not no_merge, instruction=instruction)
    how = "LoRA merged" if result.merged else "LoRA kept in adapter/"
    print(f"mghkit: wrote {result.out} ({result.format}, {result.pooling} pooling, {how}, {len(result.files)} files)")
