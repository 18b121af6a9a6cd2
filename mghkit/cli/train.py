"""train: contrastive fine-tuning (docs/method.md section 4).

Parses the options, sets the process up (:func:`mghkit.cli.setup.setup_model`), calls
:func:`mghkit.train.run.fine_tune` and reports the run dir. Every option defaults to None ("not
given"), so a preset, then a ``--config`` file, then the options given win in that order; the
defaults shown in ``--help`` are read from :class:`mghkit.train.args.TrainArgs`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from mghkit.cli.app import Quiet, app
from mghkit.cli.setup import setup_model
from mghkit.train.args import describe_default, describe_presets


def _opt(name: str, help: str, *flags: str) -> Any:
    """A ``typer.Option`` for TrainArgs field ``name`` whose help ends with the dataclass default
    (the option itself defaults to None: "not given")."""
    return typer.Option(*flags, help=f"{help}  [default: {describe_default(name)}]", show_default=False)


@app.command()
def train(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Curriculum file (trained in its order), or a validated triplet file (ordered by --schedule). "
            "May be left out with --config (the run's own training file).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            help="Replay a run: RUN/training_args.json. Its values override --preset; options given here win.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        str | None, _opt("out", "Run directory (a model for pool-inspect and eval when done).", "--out", "-o")
    ] = None,
    base_model: Annotated[
        str | None, _opt("base_model", "'local' (embedded SmolLM2-135M), a HF id or model dir.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=f"{describe_presets()}. Options given win.", show_default=False)
    ] = None,
    schedule: Annotated[
        str | None, _opt("schedule", "Triplet files: coarse-to-fine, fine-to-coarse, random, fixed:<level>, all.")
    ] = None,
    pooling: Annotated[str | None, _opt("pooling", "ata, mean, last, weighted-mean.")] = None,
    causal: Annotated[
        bool | None, _opt("causal", "Keep causal attention (--no-causal: bidirectional).", "--causal/--no-causal")
    ] = None,
    max_length: Annotated[int | None, _opt("max_length", "Max tokens per text.")] = None,
    steps: Annotated[int | None, _opt("steps", "Optimizer steps, split equally between stages.")] = None,
    epochs: Annotated[int | None, _opt("epochs", "Passes over the curriculum.")] = None,
    batch_size: Annotated[int | None, _opt("batch_size", "Examples per micro-batch and process.")] = None,
    grad_accum: Annotated[int | None, _opt("grad_accum", "Micro-batches per optimizer step.")] = None,
    grad_cache: Annotated[
        bool | None,
        _opt(
            "grad_cache",
            "GradCache: the contrastive batch is batch x grad-accum (about 2x compute).",
            "--grad-cache/--no-grad-cache",
        ),
    ] = None,
    lr: Annotated[float | None, _opt("lr", "Peak learning rate.")] = None,
    warmup_steps: Annotated[int | None, _opt("warmup_steps", "Linear warmup steps, then linear decay.")] = None,
    weight_decay: Annotated[float | None, _opt("weight_decay", "AdamW weight decay.")] = None,
    max_grad_norm: Annotated[float | None, _opt("max_grad_norm", "Gradient clipping norm (0: off).")] = None,
    temperature: Annotated[float | None, _opt("temperature", "InfoNCE temperature.")] = None,
    seed: Annotated[int | None, _opt("seed", "Seed for every random choice (deterministic).")] = None,
    lora: Annotated[
        bool | None,
        _opt("lora", "LoRA on q,k,v,o,gate,up,down (--no-lora: all weights).", "--lora/--no-lora"),
    ] = None,
    lora_r: Annotated[int | None, _opt("lora_r", "LoRA rank.")] = None,
    lora_alpha: Annotated[int | None, _opt("lora_alpha", "LoRA alpha.")] = None,
    lora_dropout: Annotated[float | None, _opt("lora_dropout", "LoRA dropout.")] = None,
    sparse_dropout: Annotated[
        bool | None,
        _opt(
            "sparse_dropout",
            "LoRA dropout masks drawn sparsely: same distribution, faster on CPU (docs/training.md).",
            "--sparse-dropout/--no-sparse-dropout",
        ),
    ] = None,
    lora_dtype: Annotated[
        str | None,
        _opt(
            "lora_dtype",
            "float32 (peft's default) or base: LoRA weights in the model's dtype, 1.36x faster for "
            "Mistral-7B bf16 on an H200 (docs/training.md).",
        ),
    ] = None,
    quantize: Annotated[str | None, _opt("quantize", "4bit or 8bit: QLoRA with bitsandbytes.")] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        _opt(
            "gradient_checkpointing",
            "Non-reentrant activation checkpointing.",
            "--gradient-checkpointing/--no-gradient-checkpointing",
        ),
    ] = None,
    dtype: Annotated[str | None, _opt("dtype", "float32, bfloat16, float16.")] = None,
    save_every: Annotated[int | None, _opt("save_every", "Checkpoint every N steps (and at the end).")] = None,
    keep_checkpoints: Annotated[int | None, _opt("keep_checkpoints", "Checkpoints kept (the latest ones).")] = None,
    resume: Annotated[
        bool | None, _opt("resume", "Continue the run in --out from its last checkpoint, exactly.", "--resume")
    ] = None,
    stop_after: Annotated[
        int | None, _opt("stop_after", "Stop after this step (with a checkpoint); finish later with --resume.")
    ] = None,
    device: Annotated[str | None, _opt("device", "Torch device, e.g. cuda, cuda:1, cpu.")] = None,
    threads: Annotated[int | None, _opt("threads", "CPU threads for torch.")] = None,
    group_by_length: Annotated[
        bool | None,
        _opt(
            "group_by_length",
            "Within each stage, micro-batches of similar length (less padding; docs/training.md).",
            "--group-by-length/--no-group-by-length",
        ),
    ] = None,
    packing: Annotated[
        bool | None,
        _opt(
            "packing",
            "Padding-free: texts share rows, each attending only to itself (decoders; docs/training.md).",
            "--packing/--no-packing",
        ),
    ] = None,
    report_to: Annotated[
        str | None, _opt("report_to", "none, tensorboard (RUN/tensorboard/) or trackio; beside metrics.jsonl.")
    ] = None,
    compile: Annotated[
        bool | None, _opt("compile", "torch.compile the model (first steps compile).", "--compile/--no-compile")
    ] = None,
    liger: Annotated[
        bool | None,
        _opt("liger", "Liger fused kernels (CUDA + liger-kernel; the plain path on CPU).", "--liger/--no-liger"),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Contrastive (InfoNCE) fine-tuning of a bidirectional decoder, LoRA/QLoRA, curriculum order.

    Several GPUs: torchrun --nproc_per_node N -m mghkit train FILE ... (negatives gathered across processes).
    Replay a run: mghkit train --config RUN/training_args.json --out NEW_RUN.
    """
    from mghkit.train.run import fine_tune

    setup_model()
    result = fine_tune(
        data, config=config, preset=preset, out=out, base_model=base_model, schedule=schedule, pooling=pooling,
        causal=causal, max_length=max_length, steps=steps, epochs=epochs, batch_size=batch_size,
        grad_accum=grad_accum, grad_cache=grad_cache, lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
        max_grad_norm=max_grad_norm, temperature=temperature, seed=seed, lora=lora, lora_r=lora_r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, sparse_dropout=sparse_dropout, lora_dtype=lora_dtype,
        quantize=quantize, gradient_checkpointing=gradient_checkpointing, dtype=dtype, save_every=save_every,
        keep_checkpoints=keep_checkpoints, resume=resume, stop_after=stop_after, device=device, threads=threads,
        group_by_length=group_by_length, packing=packing, report_to=report_to, compile=compile, liger=liger,
        progress=not quiet,
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: process 0 reports
        return
    if result.finished:
        if quiet:
            return
        loss = f"final loss {result.final_loss:.4f}" if result.losses else "no step left to train"
        print(f"run dir: {result.out} (adapter/, mghkit_model.json, training_args.json, metrics.jsonl, loss.png); "
              f"{result.steps} steps, {loss}", file=sys.stderr)  # fmt: skip
    else:
        print(f"stopped after step {result.steps} of {result.total_steps}; continue with --resume --out {result.out}",
              file=sys.stderr)  # fmt: skip
