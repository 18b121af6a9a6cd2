"""What a run dir holds, written so that it stays a model when copied or moved.

    RUN/adapter/               peft LoRA weights + the tokenizer (full fine-tune: RUN/model/)
    RUN/mghkit_model.json      the EncoderConfig (``mghkit.load_encoder(RUN)`` reads it)
    RUN/training_args.json     the TrainArgs (``mghkit train --config`` replays them)
    RUN/training_data.jsonl    the training file, when ``fine_tune`` was given records
    RUN/lineage.json           input hash, counts per stage and level
    RUN/metrics.jsonl, loss.png, checkpoints/

No absolute path is stored: the base model is ``local``, a Hugging Face id, or a dir relative to
the run dir (``./model``, ``../base``); the training file likewise (:mod:`mghkit.model.loading`).
No torch import at module level.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from mghkit.jsonl import write_json_atomic, write_text_atomic
from mghkit.model import loading

ARGS_FILE = "training_args.json"
DATA_FILE = "training_data.jsonl"
METRICS_FILE = "metrics.jsonl"
LINEAGE_FILE = "lineage.json"
PLOT_FILE = "loss.png"
MODEL_DIR = "model"  # a full fine-tune's weights (LoRA runs use loading.ADAPTER_DIR)


def portable_args(args: Any, out: Path) -> dict[str, Any]:
    """The TrainArgs as the run dir stores them: data, out and a base model dir relative to ``out``."""
    values = dict(args.to_dict())
    values["data"] = loading.portable_path(args.data, out)
    values["out"] = "."
    values["base_model"] = loading.portable_model_name(args.base_model, out)
    return values


def save_args(out: Path, args: Any, **recorded: Any) -> None:
    """``training_args.json``: the portable arguments plus what the run recorded (world size...)."""
    write_json_atomic(out / ARGS_FILE, {**portable_args(args, out), **recorded})


def save_lineage(out: Path, lineage: dict[str, Any]) -> None:
    if isinstance(lineage.get("input"), str):
        lineage = {**lineage, "input": loading.portable_path(lineage["input"], out)}
    write_json_atomic(out / LINEAGE_FILE, lineage)


def save_model(out: Path, encoder: Any, args: Any, *, data_sha256: str, steps: int) -> None:
    """adapter/ (or model/) with the tokenizer, and mghkit_model.json: ``load_encoder(out)``
    rebuilds the trained encoder wherever the run dir is later."""
    base_name = loading.portable_model_name(args.base_model, out)
    if args.lora:
        with _folder_in_one_piece(out / loading.ADAPTER_DIR) as tmp:
            save_adapter(encoder.model, encoder.tokenizer, tmp, base_name)
    else:  # full fine-tune: the whole model becomes the base
        with _folder_in_one_piece(out / MODEL_DIR) as tmp:
            encoder.model.save_pretrained(str(tmp))
            encoder.tokenizer.save_pretrained(str(tmp))
        base_name = loading.portable_path(out / MODEL_DIR, out)
    trained = {"steps": steps, "data_sha256": data_sha256, "quantize": args.quantize, "by": "mghkit train"}
    config = replace(encoder.config, base_model=base_name, dtype="float32" if args.quantize else encoder.config.dtype,
                     extra={**encoder.config.extra, "trained": trained})  # fmt: skip
    write_json_atomic(out / loading.RUN_CONFIG, config.to_dict())


@contextmanager
def _folder_in_one_piece(folder: Path) -> Iterator[Path]:
    """A temp folder beside ``folder``, renamed into place when the block ends without an error
    (removed otherwise), its files' modes following the umask: a killed run never leaves a
    half-written ``adapter/``. The run dir's ``mghkit_model.json``, written after it, is what
    makes the run dir a model."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            yield tmp
        except Exception as e:  # safetensors reports a full disk as "... (os error 28)"
            code = re.search(r"\(os error (\d+)\)", str(e))
            if isinstance(e, OSError) or code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(folder)) from e
        follow_umask(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def follow_umask(folder: Path) -> None:
    """Give the files of ``folder`` the mode a plain ``open`` would (the umask): safetensors writes
    its files 0600, which would keep a shared run dir from loading for anyone else."""
    from mghkit.files import new_file_mode

    mode = new_file_mode()
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(mode)


def save_adapter(model: Any, tokenizer: Any, folder: Path, base_name: str) -> None:
    """peft's ``save_pretrained`` plus the tokenizer, with the base model named portably in
    ``adapter_config.json`` and peft's model card (peft writes the resolved, absolute path)."""
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    resolved = str(getattr(model.get_base_model().config, "_name_or_path", "") or "")
    adapter_config = folder / "adapter_config.json"
    data = json.loads(adapter_config.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base_name
    write_json_atomic(adapter_config, data)
    card = folder / "README.md"
    if resolved and card.is_file():
        write_text_atomic(card, card.read_text(encoding="utf-8").replace(resolved, base_name))
