"""Training arguments, their defaults and the ``paper`` preset (no torch here: the CLI reads it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mghkit.errors import UsageError

PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
# The paper's hyperparameters (METHOD.md section 4; LoRA as in LLM2Vec).
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


@dataclass
class TrainArgs:
    """Everything ``mghkit train`` takes. Saved as ``training_args.json`` in the run dir."""

    data: str
    out: str = "runs/mghkit"
    base_model: str = "local"
    schedule: str | None = None  # triplet files only; curriculum files are trained in file order
    pooling: str | None = None  # None: the EncoderConfig default (docs/ata.md)
    causal: bool = False
    max_length: int = 256
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    grad_cache: bool = False
    lr: float = 2e-4
    warmup_steps: int | None = None  # None: 10% of the steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 0.02
    seed: int = 0
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_dtype: str = "float32"  # "base": adapters in the model's dtype (faster on GPU, see docs/training.md)
    quantize: str | None = None
    gradient_checkpointing: bool = True
    dtype: str | None = None  # None: bf16 where the hardware has it, else fp32
    save_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = False
    stop_after: int | None = None  # stop (with a checkpoint) after this step; finish later with --resume
    preset: str | None = None
    threads: int | None = None
    device: str | None = None  # None: CUDA where available, else CPU
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Usage errors that need no data and no model."""
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "max_length": self.max_length,
                    "save_every": self.save_every}  # fmt: skip
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give --steps or --epochs, not both")
        if self.lr <= 0 or self.temperature <= 0:
            raise UsageError("--lr and --temperature must be > 0")
        if self.quantize and not self.lora:
            raise UsageError("--quantize needs LoRA (drop --no-lora)")
        if self.lora_dtype not in ("float32", "base"):
            raise UsageError(f"unknown --lora-dtype {self.lora_dtype!r} (choose from float32, base)")
        if self.quantize not in (None, "4bit", "8bit"):
            raise UsageError(f"unknown --quantize {self.quantize!r} (choose from 4bit, 8bit)")


# The fields that must not change between a run and its --resume.
RESUME_FIXED = ("base_model", "schedule", "pooling", "causal", "max_length", "steps", "epochs", "batch_size",
                "grad_accum", "grad_cache", "lr", "warmup_steps", "temperature", "seed", "lora", "lora_r",
                "lora_alpha", "lora_dropout", "lora_dtype", "quantize")  # fmt: skip


def make_args(data: str, given: dict[str, Any], preset: str | None = None) -> TrainArgs:
    """TrainArgs from the options the user gave (None = not given), over the preset, over defaults.

    >>> make_args("t.jsonl", {"batch_size": 4}, preset="paper").batch_size
    4
    >>> make_args("t.jsonl", {}, preset="paper").grad_accum
    8
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown --preset {preset!r} (choose from {', '.join(PRESETS)})")
        values.update(PRESETS[preset])
    values.update({k: v for k, v in given.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainArgs)}
    unknown = set(values) - names
    if unknown:
        raise TypeError(f"unknown training arguments: {sorted(unknown)}")
    args = TrainArgs(data=data, preset=preset, **values)
    args.check()
    return args
