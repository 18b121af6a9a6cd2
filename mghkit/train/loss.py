"""InfoNCE over in-batch negatives plus each example's hard negative (a pure tensor function).

For query i the candidates are every positive and every hard negative in the batch (2B documents);
the target is its own positive. With unit-norm embeddings the score is a cosine divided by the
temperature (0.02 in E5, LLM2Vec and the paper)::

    logits = q @ cat(p, n).T / temperature        # [B, 2B]
    loss   = cross_entropy(logits, arange(B))      # mean over the B queries

Worked example: two orthogonal queries whose positives equal them and whose hard negatives are
orthogonal to everything, at temperature 1: each row of logits is [1, 0, 0, 0] up to order, so
the loss is log(e + 3) - 1::

    >>> import math, torch
    >>> q = torch.eye(4)[:2]; p = q.clone(); n = torch.eye(4)[2:]
    >>> round(info_nce(q, p, n, temperature=1.0).item(), 6) == round(math.log(math.e + 3) - 1, 6)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 0.02


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor | None = None,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    normalize: bool = True,
) -> torch.Tensor:
    """The mean InfoNCE loss of B queries against all 2B in-batch documents.

    q: [B, D] query embeddings; p: [B, D] their positives; n: [B, D] their hard negatives (or
    None: in-batch positives only). Row i of ``p`` is the positive of row i of ``q``.
    ``normalize`` L2-normalises all three first (cosine similarity). Returns a scalar.
    """
    if q.shape != p.shape or (n is not None and n.shape != q.shape):
        raise ValueError(f"q, p, n must share a shape [B, D]; got {tuple(q.shape)}, {tuple(p.shape)}, "
                         f"{None if n is None else tuple(n.shape)}")  # fmt: skip
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    docs = p if n is None else torch.cat([p, n], dim=0)
    if normalize:
        q, docs = F.normalize(q, dim=-1), F.normalize(docs, dim=-1)
    logits = q @ docs.T / temperature  # [B, B or 2B]
    target = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits.float(), target)
