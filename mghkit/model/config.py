"""EncoderConfig: how a model turns text into one vector. No torch here, so the CLI can read it.

Saved as ``mghkit_model.json`` in a run dir, beside ``adapter/`` (peft LoRA weights).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import UsageError
from mghkit.jsonl import write_json_atomic
from mghkit.schema import QUERY_FORMAT

POOLINGS = ("ata", "mean", "last", "weighted-mean")
ATA_DIRECTIONS = ("received", "given")
ATA_SIGNS = ("positive", "literal")
DTYPES = ("float32", "bfloat16", "float16")
# how a query meets its instruction: "joint" tokenizes instruction + query as ONE string (what
# sentence-transformers does; the query's first word keeps its leading-space token), "split"
# tokenizes them apart (the layout before the field existed: configs saved without it get "split")
QUERY_TOKENS = ("joint", "split")
# torch's device types (torch.device's own list, plus "npu" of the Ascend plugin): a device name is
# checked against them before torch is imported, so a typo fails in milliseconds, not after a model load
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "npu", "mtia", "meta", "xla", "ipu", "hip", "ve", "fpga",
                "maia", "lazy", "vulkan", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")  # fmt: skip


@dataclass
class EncoderConfig:
    """Everything needed to rebuild an encoder, apart from the weights.

    >>> EncoderConfig(base_model="local").pooling in POOLINGS
    True
    >>> EncoderConfig.from_dict({"base_model": "x", "pooling": "mean", "future_field": 1}).pooling
    'mean'
    >>> EncoderConfig().query_tokens, EncoderConfig.from_dict({"base_model": "x"}).query_tokens
    ('joint', 'split')
    """

    base_model: str = "local"
    pooling: str = "mean"  # decided in docs/ata.md (untrained: mean > ATA; revisit with trained figures)
    ata_direction: str = "received"  # "received" = column sums, "given" = row sums (docs/method.md section 3)
    ata_sign: str = "positive"  # "positive": sum max(0, log((K+1)a)); "literal": the formula as given
    bidirectional: bool = True
    query_format: str = QUERY_FORMAT
    pool_instruction: bool = False  # instruction tokens are attended to but not pooled
    query_tokens: str = "joint"  # QUERY_TOKENS; a saved config without it is "split" (from_dict)
    add_eos: bool = True  # append the tokenizer's EOS (the closing token last-token pooling reads)
    max_length: int = 512
    padding_side: str = "right"
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (e.g. training args)

    def __post_init__(self) -> None:
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("ata direction", self.ata_direction, ATA_DIRECTIONS)
        check_choice("ata sign", self.ata_sign, ATA_SIGNS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("padding side", self.padding_side, ("left", "right"))
        check_choice("query tokens", self.query_tokens, QUERY_TOKENS)
        if self.max_length < 4:
            raise UsageError(f"max length must be >= 4, got {self.max_length}")
        if "{query}" not in self.query_format:
            raise UsageError(f"query format must contain {{query}}, got {self.query_format!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Build from a dict, ignoring keys this version does not know (forward compatible). A dict
        saved before ``query_tokens`` existed gets ``"split"``: old run dirs keep their vectors."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"query_tokens": "split", **{k: v for k, v in data.items() if k in names}})

    def save(self, path: str | Path) -> None:
        """Write as JSON (``path`` is a run dir or a file)."""
        file = Path(path)
        if file.is_dir() or not file.suffix:
            file.mkdir(parents=True, exist_ok=True)
            file = file / "mghkit_model.json"
        write_json_atomic(file, self.to_dict())


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a UsageError listing the valid choices.

    >>> check_choice("pooling", "mean", POOLINGS)
    >>> check_choice("pooling", "max", POOLINGS)
    Traceback (most recent call last):
    mghkit.errors.UsageError: unknown pooling 'max' (choose from ata, mean, last, weighted-mean)
    """
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r} (choose from {', '.join(choices)})")


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu`` (what ``--device`` defaults to; imports torch)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str, option: str = "--device") -> None:
    """A torch device name (``cpu``, ``cuda``, ``cuda:1``...), checked without importing torch;
    whether the device exists here is checked when the model moves there.

    >>> check_device("cuda:1")
    >>> check_device("gpu0")
    Traceback (most recent call last):
    mghkit.errors.UsageError: --device 'gpu0': not a torch device (e.g. cpu, cuda, cuda:1)
    """
    match = re.fullmatch(r"([a-z_]+)(:[0-9]+)?", name)
    if match is None or match.group(1) not in DEVICE_TYPES:
        raise UsageError(f"{option} {name!r}: not a torch device (e.g. cpu, cuda, cuda:1)")
