"""``mghkit.fine_tune``: contrastive fine-tuning from records or a file to a run dir (the
``mghkit train`` command calls exactly this). No torch import until the data is checked.

    >>> import mghkit
    >>> run = mghkit.fine_tune(triplets, base_model="local", steps=24, out="runs/x")  # doctest: +SKIP
    >>> run.final_loss, run.out                                                      # doctest: +SKIP
    (0.61, PosixPath('runs/x'))
    >>> vectors = run.encoder().encode(["sodium latin name"])                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mghkit.errors import UsageError
from mghkit.files import is_special
from mghkit.jsonl import display_name, dumps, write_text_atomic
from mghkit.train.args import TrainArgs, make_args
from mghkit.train.rundir import DATA_FILE

if TYPE_CHECKING:
    from mghkit.model.encoder import Encoder
    from mghkit.schema import Example, Triplet
    from mghkit.train.data import Step, TrainData

__all__ = ["TrainResult", "fine_tune"]


@dataclass
class TrainResult:
    """What a training call did: the run dir, the step it reached, its losses."""

    out: Path
    steps: int  # the last step trained (equals total_steps once finished)
    total_steps: int
    final_loss: float
    losses: list[float] = field(default_factory=list)  # this call's (a resumed run: from the resume point)
    seconds: float = 0.0
    finished: bool = True  # False: stopped early (stop_after); continue with resume=True

    def encoder(self, **overrides: Any) -> Encoder:
        """The trained encoder (``mghkit.load_encoder(out, **overrides)``)."""
        if not self.finished:
            raise UsageError(f"{self.out}: the run stopped at step {self.steps} of {self.total_steps}; resume it first")
        from mghkit.model.encoder import load_encoder

        return load_encoder(str(self.out), **overrides)


def fine_tune(
    examples: Iterable[Example | Triplet | dict[str, Any]] | str | os.PathLike[str] | None,
    *,
    base_model: str | None = None,
    out: str | os.PathLike[str] | None = None,
    steps: int | None = None,
    schedule: str | None = None,
    pooling: str | None = None,
    causal: bool | None = None,
    max_length: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    grad_accum: int | None = None,
    grad_cache: bool | None = None,
    lr: float | None = None,
    warmup_steps: int | None = None,
    weight_decay: float | None = None,
    max_grad_norm: float | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    lora: bool | None = None,
    lora_r: int | None = None,
    lora_alpha: int | None = None,
    lora_dropout: float | None = None,
    sparse_dropout: bool | None = None,
    lora_dtype: str | None = None,
    quantize: str | None = None,
    gradient_checkpointing: bool | None = None,
    dtype: str | None = None,
    save_every: int | None = None,
    keep_checkpoints: int | None = None,
    resume: bool | None = None,
    stop_after: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    extra: dict[str, Any] | None = None,
    group_by_length: bool | None = None,
    packing: bool | None = None,
    report_to: str | None = None,
    compile: bool | None = None,
    liger: bool | None = None,
    preset: str | None = None,
    config: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune ``base_model`` with InfoNCE on ``examples`` and write a run dir to ``out``.

    ``examples``: curriculum ``Example`` records (trained in their order), ``Triplet`` records
    (ordered by ``schedule``), dicts of either, or a path to such a JSONL file. Records are
    written to ``OUT/training_data.jsonl``, so the run can be resumed and replayed like a file;
    so is a stream (``-``, a FIFO, ``<(...)``), read exactly once. ``None``: the training file
    named by ``config``.

    Every other keyword is a ``TrainArgs`` field (``mghkit train --help`` lists them with their
    defaults): None means "not given", and the value then comes from ``config`` (a run's
    ``training_args.json``), else from ``preset`` (``"paper"``), else from the defaults
    (``base_model="local"``, ``out="runs/mghkit"``, ``batch_size=8``...). ``progress`` shows a
    progress display on stderr. Returns a :class:`TrainResult`; ``.encoder()`` loads the model.

    Bad data or options raise ``UsageError`` / ``InputError`` before torch is imported. The
    caller's random state and torch thread count are left as they were.
    """
    given = {"base_model": base_model, "out": None if out is None else str(out), "steps": steps, "schedule": schedule,
             "pooling": pooling, "causal": causal, "max_length": max_length, "epochs": epochs,
             "batch_size": batch_size, "grad_accum": grad_accum, "grad_cache": grad_cache, "lr": lr,
             "warmup_steps": warmup_steps, "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
             "temperature": temperature, "seed": seed, "lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha,
             "lora_dropout": lora_dropout, "sparse_dropout": sparse_dropout, "lora_dtype": lora_dtype,
             "quantize": quantize, "gradient_checkpointing": gradient_checkpointing, "dtype": dtype,
             "save_every": save_every, "keep_checkpoints": keep_checkpoints, "resume": resume,
             "stop_after": stop_after, "threads": threads, "device": device, "extra": extra,
             "group_by_length": group_by_length, "packing": packing, "report_to": report_to, "compile": compile,
             "liger": liger}  # fmt: skip
    config = None if config is None else os.fspath(config)
    from mghkit.model.loading import check_encoder_options
    from mghkit.train.data import check_base_model, prepare

    if examples is None or isinstance(examples, str | os.PathLike):
        args = make_args(None if examples is None else os.fspath(examples), given, preset=preset, config=config)
        check_base_model(args.base_model)
        check_encoder_options(args.base_model, pooling=args.pooling, causal=args.causal)
        if is_special(args.data):  # '-', a FIFO, <(...): read once into the run dir
            args, prepared = _prepare_stream(args)
        else:
            prepared = prepare(args)  # the whole file is checked before torch is imported (fails in seconds)
    else:
        records = _records_text(examples)
        args = make_args(DATA_FILE, given, preset=preset, config=config)
        check_base_model(args.base_model)
        check_encoder_options(args.base_model, pooling=args.pooling, causal=args.causal)
        args = replace(args, data=str(Path(args.out) / DATA_FILE))
        _write_records(Path(args.data), records, resume=args.resume, out=args.out)
        prepared = prepare(args)
    from mghkit.train.loop import train

    return train(args, prepared=prepared, progress=progress)


def _records_text(examples: Iterable[Any]) -> str:
    """JSONL text of in-memory records (pydantic records or dicts)."""
    if isinstance(examples, dict):
        raise UsageError("examples: expected a list of records (Example, Triplet or dicts) or a path, got one dict")
    lines = []
    for i, rec in enumerate(examples):
        if hasattr(rec, "model_dump"):
            obj = rec.model_dump(mode="json", exclude_none=True)
        elif isinstance(rec, dict):
            obj = rec
        else:
            raise UsageError(f"examples[{i}]: expected an Example, a Triplet or a dict, got {type(rec).__name__}")
        lines.append(dumps(obj) + "\n")
    return "".join(lines)


def _prepare_stream(args: TrainArgs) -> tuple[TrainArgs, tuple[TrainData, list[Step]]]:
    """``prepare`` for a training stream: spooled into the run dir first (:func:`_spool_stream`);
    errors name the stream (``<stdin>:3: query``), and a stream that fails the checks leaves
    nothing behind (nor a run dir this call created)."""
    from mghkit.errors import InputError
    from mghkit.train.data import prepare

    stream = display_name(args.data)
    out = Path(args.out)
    new_dir = not out.exists()
    fresh = not (args.resume and (out / DATA_FILE).exists())
    spooled = replace(args, data=_spool_stream(args.data, out=args.out, resume=args.resume))
    try:
        prepared = prepare(spooled)
    except BaseException as e:
        if fresh:
            Path(spooled.data).unlink(missing_ok=True)
            if new_dir:
                with contextlib.suppress(OSError):
                    out.rmdir()
        if isinstance(e, InputError) and e.path == display_name(spooled.data):
            raise InputError(e.reason, path=stream, line=e.line, field=e.field) from None
        raise
    prepared[0].extra["read_from"] = stream
    return spooled, prepared


def _spool_stream(source: str, *, out: str, resume: bool) -> str:
    """Copy a training stream (``-``, a FIFO, ``/dev/fd/N``) into ``OUT/training_data.jsonl``,
    reading it exactly once, and return that path: the run is then checked, hashed, resumed and
    replayed (``--config``) from a regular file. A resumed run must bring the same bytes."""
    import filecmp
    import shutil
    import sys

    from mghkit.files import AtomicFile
    from mghkit.train.data import check_out

    check_out(out, resume=resume)
    target = Path(out) / DATA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    keep = resume and target.is_file()
    dest = target.with_name(f".{DATA_FILE}.resume") if keep else target
    with AtomicFile(dest, binary=True) as spool:
        if str(source) == "-":
            shutil.copyfileobj(sys.stdin.buffer, spool.fp, 1 << 20)
        else:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, spool.fp, 1 << 20)
    if keep:
        same = filecmp.cmp(dest, target, shallow=False)
        dest.unlink()
        if not same:
            raise UsageError(f"{out}: resume with other examples than the run's {DATA_FILE}")
    return str(target)


def _write_records(path: Path, text: str, *, resume: bool, out: str) -> None:
    """Write the training file into the run dir (after checking the dir can take the run); a
    resumed run must bring the same records."""
    from mghkit.train.data import check_out

    check_out(out, resume=resume)
    if resume and path.exists():
        if path.read_text(encoding="utf-8") != text:
            raise UsageError(f"{out}: resume with other examples than the run's {DATA_FILE}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
