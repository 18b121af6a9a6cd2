"""Optional speed-ups of the training forward pass, each off by default and each equal to the plain
path within tolerance (tests/train/test_speed.py):

- ``--compile``: ``torch.compile`` of the model in place (``nn.Module.compile``: the parameter
  names, and so the saved adapter, stay as they are). Works on CPU (inductor needs a C++
  compiler) and on CUDA; the first steps pay the compilation, and each new padded length may
  recompile once before torch marks the shapes dynamic.
- ``--liger``: Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU) on a Llama / Mistral / Qwen2
  base. Triton kernels need a CUDA GPU: on any other device the run falls back to the plain
  PyTorch path with one warning (and records ``liger_used: false``); on CUDA without the
  ``liger-kernel`` package the option is refused with one line, before the model loads. The fused
  linear + cross-entropy kernel does not apply (an embedding model has no LM head). Untested on a
  GPU so far.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from mghkit.errors import UsageError

log = logging.getLogger(__name__)

LIGER_FAMILIES = ("llama", "mistral", "qwen2")


def liger_runs_on(device_type: str | None) -> bool:
    """Whether ``--liger`` uses the kernels on ``device_type`` (None: not known yet, so checked as if
    CUDA); refuses CUDA without the package.

    >>> liger_runs_on("cpu")
    False
    """
    if device_type is not None and device_type != "cuda":
        return False
    if importlib.util.find_spec("liger_kernel") is None:
        raise UsageError("--liger: the liger-kernel package is not installed (pip install liger-kernel; CUDA only)")
    return True


def apply_liger(model: Any) -> None:
    """Patch the base decoder's RMSNorm, RoPE and SwiGLU modules in place with Liger's kernels."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    family = getattr(base.config, "model_type", "")
    if family not in LIGER_FAMILIES:
        raise UsageError(f"--liger: model type {family!r} is not one of {', '.join(LIGER_FAMILIES)}")
    _apply_liger_kernel_to_instance(model=base, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)  # fmt: skip
    log.info("liger: fused RMSNorm, RoPE and SwiGLU kernels on the %s base", family)


def compile_model(model: Any, *, dynamic: bool | None = None, backend: str = "inductor") -> None:
    """``torch.compile`` ``model``'s forward in place (state-dict keys unchanged)."""
    model.compile(dynamic=dynamic, backend=backend)
    log.info("torch.compile: the model's forward is compiled (%s); the first steps include compilation", backend)


def apply_speedups(model: Any, *, compile: bool, liger: bool, device_type: str) -> dict[str, bool]:
    """The speed-ups a run asked for, Liger first (compile then traces the fused modules);
    -> which ones were applied."""
    used = {"liger_used": False, "compile_used": False}
    if liger and liger_runs_on(device_type):
        apply_liger(model)
        used["liger_used"] = True
    elif liger:
        log.warning("--liger: Liger's kernels are Triton kernels for CUDA; on %s training runs the plain PyTorch path",
                    device_type)  # fmt: skip
    if compile:
        compile_model(model)
        used["compile_used"] = True
    return used
