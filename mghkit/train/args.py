"""Training arguments: the one dataclass, its defaults, the ``paper`` preset and replay from a
run's ``training_args.json`` (no torch here: the CLI reads it for ``--help``).

Precedence, lowest first (as trl's ``parse_args_and_config``): the dataclass defaults < the
preset < the config file (``--config RUN/training_args.json``) < options given explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import InputError, UsageError

PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
# The paper's hyperparameters (docs/method.md section 4; LoRA as in LLM2Vec).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "base_model": PAPER_MODEL,
        "batch_size": 64,
        "grad_accum": 8,
        "lr": 2e-4,
        "warmup_steps": 300,
        "max_length": 512,
        "temperature": 0.02,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "lora_dtype": "base",  # bf16 adapters on a bf16 base: 1.36x faster on an H200 (docs/training.md)
    },
}


def _opt(default: Any, none: str) -> Any:
    """A field whose default is None, with what None means (shown as the default in ``--help``)."""
    return field(default=default, metadata={"none": none})


@dataclass
class TrainArgs:
    """Everything ``mghkit train`` / ``mghkit.fine_tune`` takes. Saved as ``training_args.json``
    in the run dir (paths relative to the run dir), which ``--config`` replays."""

    data: str
    out: str = "runs/mghkit"
    base_model: str = "local"
    schedule: str | None = _opt(None, "coarse-to-fine")
    pooling: str | None = _opt(None, "mean, see docs/ata.md")
    causal: bool = False
    max_length: int = 256
    steps: int | None = _opt(None, "one epoch")
    epochs: int | None = _opt(None, "1 when --steps is not given")
    batch_size: int = 8
    grad_accum: int = 1
    grad_cache: bool = False
    lr: float = 2e-4
    warmup_steps: int | None = _opt(None, "10% of the steps")
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 0.02
    seed: int = 0
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    sparse_dropout: bool = True  # LoRA dropout masks drawn sparsely, same distribution (mghkit/train/dropout.py)
    lora_dtype: str = "float32"  # "base": adapters in the model's dtype (faster on GPU, see docs/training.md)
    quantize: str | None = _opt(None, "none")
    gradient_checkpointing: bool = True
    dtype: str | None = _opt(None, "bfloat16 where the hardware has it, else float32")
    save_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = False
    stop_after: int | None = _opt(None, "none")  # stop (with a checkpoint) after this step; finish with resume
    preset: str | None = _opt(None, "none")
    threads: int | None = _opt(None, "torch's default")
    device: str | None = _opt(None, "cuda when available, else cpu")
    group_by_length: bool = True  # micro-batches of similar length within each stage (docs/training.md)
    packing: bool = False  # padding-free rows: several texts a row, each attending to itself (docs/training.md)
    report_to: str = "none"  # none | tensorboard | trackio (beside metrics.jsonl and loss.png)
    compile: bool = False  # torch.compile the model (mghkit/train/speed.py)
    liger: bool = False  # Liger fused kernels (CUDA + the liger-kernel package; the plain path on CPU)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Usage errors that need no data and no model: every option, before anything is loaded.

        >>> TrainArgs("t.jsonl", lora_dropout=1.0).check()
        Traceback (most recent call last):
        mghkit.errors.UsageError: --lora-dropout must be in [0, 1), got 1.0
        """
        from mghkit.model.config import DTYPES, POOLINGS, check_choice, check_device

        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise UsageError(f"--base-model: expected a model name or dir, got {self.base_model!r}")
        if not str(self.out).strip():
            raise UsageError("--out: expected a run directory, got ''")
        at_least = {"batch_size": 1, "grad_accum": 1, "max_length": 4, "save_every": 1, "lora_r": 1, "lora_alpha": 1,
                    "steps": 1, "epochs": 1, "threads": 1, "stop_after": 1, "warmup_steps": 0,
                    "keep_checkpoints": 0}  # fmt: skip
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"--{name} must be a number > 0, got {value}")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
        if not 0 <= self.lora_dropout < 1:  # NaN fails too
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give --steps or --epochs, not both")
        if self.pooling is not None:
            check_choice("pooling", self.pooling, POOLINGS)
        if self.dtype is not None:
            check_choice("dtype", self.dtype, DTYPES)
        if self.device is not None:
            check_device(self.device)
        if self.quantize and not self.lora:
            raise UsageError("--quantize needs LoRA (drop --no-lora)")
        if self.lora_dtype not in ("float32", "base"):
            raise UsageError(f"unknown --lora-dtype {self.lora_dtype!r} (choose from float32, base)")
        if self.quantize not in (None, "4bit", "8bit"):
            raise UsageError(f"unknown --quantize {self.quantize!r} (choose from 4bit, 8bit)")
        from mghkit.train.report import check_report_to

        check_report_to(self.report_to)
        if self.liger and self.device is not None and self.device.startswith("cuda"):
            from mghkit.train.speed import liger_runs_on

            liger_runs_on("cuda")  # the package is there (other devices fall back to the plain path)


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainArgs)}

# The fields that must not change between a run and its --resume.
RESUME_FIXED = ("base_model", "schedule", "pooling", "causal", "max_length", "steps", "epochs", "batch_size",
                "grad_accum", "grad_cache", "lr", "warmup_steps", "temperature", "seed", "lora", "lora_r",
                "lora_alpha", "lora_dropout", "sparse_dropout", "lora_dtype", "quantize", "group_by_length")  # fmt: skip
# What a run records beside its arguments in training_args.json (read back, not replayed).
RECORDED = ("world_size", "warmup_steps_used", "dtype_used", "device_used", "liger_used", "compile_used")
# Fields a config file does not replay: a replay is a new run unless --resume is given again.
NOT_REPLAYED = ("resume",)


def default_of(name: str) -> Any:
    """The dataclass default of a field.

    >>> default_of("batch_size"), default_of("extra")
    (8, {})
    """
    f = FIELDS[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    return None if f.default_factory is dataclasses.MISSING else f.default_factory()  # "data" has no default


def describe_default(name: str) -> str:
    """The default of a field as ``--help`` shows it, with the paper preset's value where it differs.

    >>> describe_default("lora_r"), describe_default("max_length"), describe_default("warmup_steps")
    ('16', '256; paper: 512', '10% of the steps; paper: 300')
    """
    value = default_of(name)
    text = FIELDS[name].metadata.get("none", "none") if value is None else _show(value)
    for preset, values in PRESETS.items():
        if name in values and values[name] != value:
            text += f"; {preset}: {_show(values[name])}"
    return text


def describe_presets() -> str:
    """Each preset's values, for ``--help``.

    >>> describe_presets().split(": ")[0]
    "'paper'"
    """
    return "; ".join(f"'{name}': " + ", ".join(f"{k.replace('_', '-')} {_show(v)}" for k, v in values.items())
                     for name, values in PRESETS.items())  # fmt: skip


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_config(path: str | Path) -> dict[str, Any]:
    """The replayable fields of a ``training_args.json``: checked against the dataclass (unknown
    keys and wrong types are InputErrors), run-relative paths resolved against the file's folder,
    recorded figures (``world_size``...) and ``resume`` left out."""
    file = Path(path)
    name = str(path)
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {name}: no such file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"not a readable JSON file ({e})", path=name) from None
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object of training arguments", path=name)
    unknown = sorted(set(obj) - set(FIELDS) - set(RECORDED))
    if unknown:
        raise InputError(f"unknown training arguments {', '.join(unknown)} (valid: {', '.join(FIELDS)})", path=name)
    values = {k: v for k, v in obj.items() if k in FIELDS and k not in NOT_REPLAYED}
    for key, value in values.items():
        _check_type(key, value, name)
    from mghkit.model.loading import resolve_portable

    for key in ("data", "out"):  # always paths: relative ones are relative to the file's folder
        value = values.get(key)
        if isinstance(value, str) and value != "-" and not Path(value).is_absolute():
            values[key] = os.path.normpath(os.path.join(os.path.abspath(file.parent), value))
    if isinstance(values.get("base_model"), str):  # a name, or a dir written ./x or ../x
        values["base_model"] = resolve_portable(values["base_model"], file.parent)
    return values


def _check_type(key: str, value: Any, path: str) -> None:
    kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict[str, Any]": (dict,)}
    annotation = str(FIELDS[key].type)
    allowed: tuple[type, ...] = ()
    for part in annotation.split("|"):
        allowed += kinds.get(part.strip(), (type(None),) if part.strip() == "None" else ())
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise InputError(f"expected {annotation}, got {json.dumps(value)}", path=path, field=key)


def make_args(
    data: str | None, given: dict[str, Any], preset: str | None = None, config: str | Path | None = None
) -> TrainArgs:
    """TrainArgs from the options the user gave (None = not given), over the config file, over
    the preset, over the defaults. ``data`` may be None when the config file names it.

    >>> make_args("t.jsonl", {"batch_size": 4}, preset="paper").batch_size
    4
    >>> make_args("t.jsonl", {}, preset="paper").grad_accum
    8
    """
    from_file = read_config(config) if config is not None else {}
    preset = preset if preset is not None else from_file.get("preset")
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown --preset {preset!r} (choose from {', '.join(PRESETS)})")
        values.update(PRESETS[preset])
    values.update(from_file)
    values.update({k: v for k, v in given.items() if v is not None})
    if data is not None:
        values["data"] = str(data)
    if values.get("data") is None:
        raise UsageError("no training data: give the training file (or examples), or --config with a 'data' entry")
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown training arguments: {sorted(unknown)}")
    values["preset"] = preset
    args = TrainArgs(**values)
    args.check()
    return args
