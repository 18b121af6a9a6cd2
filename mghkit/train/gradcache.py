"""One optimizer step's gradients, two ways: plain accumulation and GradCache.

Plain accumulation (``accumulate_backward``) runs forward + backward per micro-batch, so each
micro-batch's queries only see that micro-batch's documents as negatives. GradCache
(``grad_cache_backward``, Gao et al. 2021) makes the contrastive batch the whole effective
batch (batch x grad-accum) at the memory cost of one micro-batch:

1. embed every micro-batch without autograd, recording the RNG state before each;
2. compute the loss on all cached embeddings and backpropagate it to the embeddings only;
3. re-embed each micro-batch with autograd (same RNG state, so the same dropout masks) and
   backpropagate the cached embedding gradients into the parameters.

The parameter gradients equal those of one forward + backward over the full batch (tested), for
about twice the compute. ``forward(chunk)`` returns a tuple of embedding tensors (for example
queries, positives, negatives); ``loss_fn`` receives those tuples concatenated over chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

C = TypeVar("C")
Forward = Callable[[C], tuple[torch.Tensor, ...]]
LossFn = Callable[..., torch.Tensor]


class RngState:
    """The CPU and CUDA RNG states at one moment, to replay dropout exactly."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def accumulate_backward(forward: Forward[Any], chunks: Sequence[Any], loss_fn: LossFn) -> torch.Tensor:
    """Plain gradient accumulation: each chunk's loss on its own in-batch negatives, scaled by
    1/len(chunks) and backpropagated at once. Returns the mean loss (detached)."""
    total = torch.zeros(())
    for chunk in chunks:
        loss = loss_fn(*forward(chunk)) / len(chunks)
        loss.backward()
        total = total + loss.detach().float().cpu()
    return total


def grad_cache_backward(forward: Forward[Any], chunks: Sequence[Any], loss_fn: LossFn) -> torch.Tensor:
    """GradCache: the loss of all chunks together, its gradients pushed into the parameters one
    chunk at a time. Returns the full-batch loss (detached)."""
    states: list[RngState] = []
    cached: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState())
            cached.append(tuple(t.detach().requires_grad_() for t in forward(chunk)))
    n_out = len(cached[0])
    full = [torch.cat([c[k] for c in cached], dim=0) for k in range(n_out)]
    loss = loss_fn(*full)
    loss.backward()  # gradients reach only the cached leaves
    after = RngState()
    for chunk, state, leaves in zip(chunks, states, cached, strict=True):
        state.restore()
        outs = forward(chunk)
        surrogate = sum(
            (o * leaf.grad.to(o.dtype)).sum() for o, leaf in zip(outs, leaves, strict=True) if leaf.grad is not None
        )
        if isinstance(surrogate, torch.Tensor) and surrogate.requires_grad:
            surrogate.backward()
    after.restore()  # continue the RNG stream as if each chunk had been embedded once
    return loss.detach().float().cpu()
