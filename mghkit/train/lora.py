"""The trainable encoder: base model (optionally 4/8-bit), gradient checkpointing, LoRA.

The base (full precision, or 4/8-bit for QLoRA) is loaded by ``mghkit.model.loading.load_model``
with the encoder's bidirectional settings. The result is a normal
``mghkit.model.encoder.Encoder`` whose ``model`` is a peft model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mghkit.errors import UsageError
from mghkit.model import loading
from mghkit.model.config import EncoderConfig
from mghkit.model.encoder import Encoder
from mghkit.train.dropout import use_sparse_dropout

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# BERT-like encoders (a sentence-transformers base such as all-MiniLM-L6-v2): used when none of
# the decoder targets exist and the settings kept the default targets
ENCODER_LORA_TARGETS = ("query", "key", "value", "dense")
QUANTIZE = ("4bit", "8bit")
LORA_DTYPES = ("float32", "base")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = LORA_TARGETS
    # "float32": peft's default, adapter weights in fp32 over a bf16 base (every LoRA matmul casts
    # its input); "base": the base model's dtype - 1.40x faster for Mistral-7B on an H200
    # (docs/training.md), with less precise adapter updates.
    dtype: str = "float32"
    # LoRA dropout masks drawn from ~p random numbers an element (mghkit/train/dropout.py): the same
    # distribution as peft's torch.nn.Dropout, a fifth of a CPU step less for SmolLM2-135M
    sparse_dropout: bool = True


def pick_device(local_rank: int = 0, name: str | None = None) -> torch.device:
    """``name`` (e.g. "cuda", "cuda:1", "cpu") or, when None, CUDA where available, else CPU.
    A bare "cuda" means this process's GPU (``local_rank``) under torchrun."""
    if name is None:
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"--device {name!r}: not a torch device (e.g. cpu, cuda, cuda:1)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available here")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def auto_dtype(device: torch.device) -> str:
    """bf16 where the hardware has it (CUDA with bf16 support), else fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def _bnb_config(quantize: str, dtype: str) -> Any:
    """The bitsandbytes config of ``--quantize 4bit|8bit`` (4bit: NF4, double quantisation)."""
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        compute = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                                  bnb_4bit_use_double_quant=True)  # fmt: skip
    return BitsAndBytesConfig(load_in_8bit=True)


def build_trainable_encoder(
    config: EncoderConfig,
    *,
    lora: LoraSettings | None = LoraSettings(),
    quantize: str | None = None,
    gradient_checkpointing: bool = True,
    device: torch.device | None = None,
    seed: int = 0,
) -> Encoder:
    """Load ``config.base_model`` and make it trainable: LoRA adapters (seeded, identical on every
    process; the caller's RNG is left as it was), non-reentrant gradient checkpointing, use_cache
    off. ``lora=None`` trains all weights."""
    device = device or pick_device()
    if quantize is not None and quantize not in QUANTIZE:
        raise UsageError(f"unknown --quantize {quantize!r} (choose from {', '.join(QUANTIZE)})")
    if quantize and lora is None:
        raise UsageError("--quantize needs LoRA (a quantised base cannot be trained directly)")
    if quantize:
        model, tokenizer, _ = loading.load_model(
            config.base_model, bidirectional=config.bidirectional, dtype=config.dtype,
            quantization_config=_bnb_config(quantize, config.dtype),
            device_map={"": device.index if device.type == "cuda" else "cpu"},
        )  # fmt: skip
    else:
        model, tokenizer, _ = loading.load_model(
            config.base_model, bidirectional=config.bidirectional, dtype=config.dtype
        )
        model.to(device)
    return make_trainable(model, tokenizer, config, lora=lora, quantized=quantize is not None,
                          gradient_checkpointing=gradient_checkpointing, seed=seed)  # fmt: skip


def make_trainable(
    model: Any,
    tokenizer: Any,
    config: EncoderConfig,
    *,
    lora: LoraSettings | None = LoraSettings(),
    quantized: bool = False,
    gradient_checkpointing: bool = True,
    seed: int = 0,
) -> Encoder:
    """An already loaded base model (on its device) -> a trainable Encoder: use_cache off,
    k-bit preparation when ``quantized``, checkpointing, LoRA. ``build_trainable_encoder`` calls
    this after loading; bench/gpu_mistral7b.py calls it on a Mistral-7B built from its config."""
    model.config.use_cache = False
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if gradient_checkpointing:
        enable_checkpointing(model, keep_last=config.pooling == "ata")
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [t for t in lora.targets if t in present]
        if not targets and lora.targets == LORA_TARGETS:
            targets = [t for t in ENCODER_LORA_TARGETS if t in present]
        if not targets:
            raise UsageError(f"{config.base_model}: none of the LoRA target modules {', '.join(lora.targets)} exist")
        if lora.dtype not in LORA_DTYPES:
            raise UsageError(f"unknown --lora-dtype {lora.dtype!r} (choose from {', '.join(LORA_DTYPES)})")
        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                                 bias="none")  # fmt: skip
        with torch.random.fork_rng(devices=[]):  # peft initialises the adapters on the CPU generator
            torch.default_generator.manual_seed(seed)  # the same initialisation on every process
            model = get_peft_model(model, peft_config, autocast_adapter_dtype=lora.dtype == "float32")
        if lora.sparse_dropout:
            use_sparse_dropout(model)
    model.train()
    return Encoder(model, tokenizer, config)


def enable_checkpointing(model: Any, keep_last: bool = False) -> None:
    """Non-reentrant activation checkpointing on every decoder layer. ``keep_last`` leaves the
    last layer un-checkpointed: ATA pooling reads that layer's attention through a hook, and a
    recomputation of the layer without the hook would not match the first pass."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if keep_last:
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
        if layers:
            layers[-1].gradient_checkpointing = False


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors by name (the LoRA weights), for checkpoints."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise UsageError(
            f"checkpoint does not match the model: {len(missing)} trainable tensors missing, e.g. {missing[0]}"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
