"""Sparse dropout: the same i.i.d. Bernoulli mask as ``torch.nn.functional.dropout``, drawn from
about ``p`` random numbers an element instead of one.

LoRA applies dropout to the input of every adapted projection (7 a layer): on CPU, drawing one
random number per activation was a fifth of a SmolLM2-135M training step (docs/training.md).
Here the dropped positions are drawn directly: ``k ~ Poisson(-n ln(1 - p))`` positions, uniform
with replacement over the ``n`` elements. Poissonisation makes the number of draws landing on each
element independent Poisson(-ln(1 - p)) counts, so each element is dropped independently with
probability ``1 - exp(ln(1 - p)) = p`` - the exact distribution of ``F.dropout``, from a
different random stream. Kept elements are scaled by ``1 / (1 - p)`` as usual; the backward
pass zeroes the same positions (only the ``k`` indices are saved, not an ``n``-element mask).

    out = sparse_dropout(x, 0.05)                     # training-time dropout, as F.dropout(x, 0.05)
    use_sparse_dropout(peft_model)                    # swap peft's LoRA dropout modules in place
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["SparseDropout", "dropped_positions", "sparse_dropout", "use_sparse_dropout"]


def dropped_positions(n: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Flat indices (with repeats) of the elements to drop among ``n``: each element is in the set
    independently with probability ``p``. The count is drawn on the CPU generator, the positions on
    ``device``'s (so a GradCache replay of both RNG states redraws the same mask)."""
    rate = torch.tensor(-n * math.log1p(-p), dtype=torch.float64)
    k = int(torch.poisson(rate).item())
    return torch.randint(0, n, (k,), device=device)


class _SparseDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        out = (x * (1.0 / (1.0 - p))).contiguous()
        idx = dropped_positions(out.numel(), p, out.device)
        out.view(-1)[idx] = 0
        ctx.save_for_backward(idx)
        ctx.p = p
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (idx,) = ctx.saved_tensors
        grad_in = (grad * (1.0 / (1.0 - ctx.p))).contiguous()
        grad_in.view(-1)[idx] = 0
        return grad_in, None


def sparse_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the mask drawn sparsely (module docstring)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0 or x.numel() == 0:
        return x
    return _SparseDropout.apply(x, p)


class SparseDropout(torch.nn.Module):
    """A drop-in for ``torch.nn.Dropout(p)`` (no parameters, so checkpoints are unchanged)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_sparse_dropout(model: torch.nn.Module) -> int:
    """Replace the ``torch.nn.Dropout`` modules of peft's LoRA layers (their ``lora_dropout``
    dicts) by ``SparseDropout`` of the same probability; returns how many were replaced."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if type(drop) is torch.nn.Dropout and drop.p > 0:
                fast = SparseDropout(drop.p)
                fast.train(drop.training)
                drops[name] = fast
                swapped += 1
    return swapped
