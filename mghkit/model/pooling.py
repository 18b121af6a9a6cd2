"""Pooling as pure tensor functions: token weights, then one weighted sum.

Shapes: B batch, S sequence, D hidden, H heads.

- ``pool_mask`` [B, S] (bool or 0/1): the positions that are pooled - text tokens and the
  special tokens (BOS/EOS); never padding, and not the instruction unless asked.
- ``attn`` [B, H, S, S]: last-layer attention probabilities, row i = query (attending)
  position, column j = key (attended) position.
- ``valid`` [B, 1 or H, S, S] bool: which (i, j) pairs the attention mask allowed. Masked pairs
  (padding, and the future under causal attention) are left out of every ATA sum.

Every mode is ``pool(hidden, weights)`` with weights [B, S] that are >= 0, zero outside
``pool_mask`` and sum to 1 per row.
"""

from __future__ import annotations

import torch

EPS = 1e-6  # attention probabilities are clamped to this before the log


def _mask(pool_mask: torch.Tensor) -> torch.Tensor:
    if pool_mask.dim() != 2:
        raise ValueError(f"pool_mask must be [B, S], got {tuple(pool_mask.shape)}")
    return pool_mask.bool()


def _normalise(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows of non-negative ``w`` scaled to sum 1 over ``mask``; an all-zero row falls back to uniform.

    >>> _normalise(torch.tensor([[2.0, 0.0, 2.0], [0.0, 0.0, 0.0]]), torch.tensor([[1, 1, 0], [1, 1, 0]]).bool())
    tensor([[1.0000, 0.0000, 0.0000],
            [0.5000, 0.5000, 0.0000]])
    """
    w = w.masked_fill(~mask, 0.0)
    total = w.sum(-1, keepdim=True)
    uniform = mask.to(w.dtype) / mask.sum(-1, keepdim=True).clamp(min=1).to(w.dtype)
    return torch.where(total > 0, w / total.clamp(min=torch.finfo(w.dtype).tiny), uniform)


def mean_weights(pool_mask: torch.Tensor) -> torch.Tensor:
    """Uniform weights over the pooled positions. [B, S] -> [B, S]

    >>> mean_weights(torch.tensor([[1, 1, 0, 0]]))
    tensor([[0.5000, 0.5000, 0.0000, 0.0000]])
    """
    mask = _mask(pool_mask)
    return _normalise(mask.float(), mask)


def last_weights(pool_mask: torch.Tensor) -> torch.Tensor:
    """All weight on the last pooled position (the EOS), with left or right padding. [B, S] -> [B, S]

    >>> last_weights(torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]]))
    tensor([[0., 0., 1., 0.],
            [0., 0., 0., 1.]])
    """
    mask = _mask(pool_mask)
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, pos, -1).max(-1, keepdim=True).values
    return (pos == last).float() * mask.float()


def weighted_mean_weights(pool_mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (SGPT): the k-th pooled token gets weight k. [B, S] -> [B, S]

    >>> weighted_mean_weights(torch.tensor([[0, 1, 1, 1]]))
    tensor([[0.0000, 0.1667, 0.3333, 0.5000]])
    """
    mask = _mask(pool_mask)
    rank = torch.cumsum(mask.long(), -1).float() * mask.float()
    return _normalise(rank, mask)


def ata_raw(
    attn: torch.Tensor,
    pool_mask: torch.Tensor,
    valid: torch.Tensor | None = None,
    direction: str = "received",
    sign: str = "positive",
    eps: float = EPS,
) -> torch.Tensor:
    """The unnormalised ATA score w_i of docs/method.md section 3. [B,H,S,S], [B,S] -> [B,S]

    w_i = sum_h sum_j log((K+1) a^h_ij) over pooled j ("given": row i) or
    w_i = sum_h sum_j log((K+1) a^h_ji) ("received": column i), K = number of pooled tokens,
    a clamped to ``eps`` before the log, pairs outside ``pool_mask`` x ``pool_mask`` or not
    ``valid`` left out of the sum. ``sign="positive"`` sums max(0, log((K+1)a)) instead: only
    above-uniform attention counts. Zero outside ``pool_mask``.

    One head, K = 2 pooled tokens, each row attends 3/4 to token 0 -> (K+1)a = 9/4 and 3/4:
    >>> a = torch.tensor([[[[0.75, 0.25], [0.75, 0.25]]]])
    >>> ata_raw(a, torch.ones(1, 2), direction="received", sign="positive")  # 2 log(9/4), 0
    tensor([[1.6219, 0.0000]])
    >>> ata_raw(a, torch.ones(1, 2), direction="given", sign="literal")  # log(9/4) + log(3/4) per row
    tensor([[0.5232, 0.5232]])
    """
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must be [B, H, S, S], got {tuple(attn.shape)}")
    if direction not in ("received", "given"):
        raise ValueError(f"unknown ATA direction {direction!r} (choose from received, given)")
    if sign not in ("positive", "literal"):
        raise ValueError(f"unknown ATA sign {sign!r} (choose from positive, literal)")
    mask = _mask(pool_mask)
    k = mask.sum(-1).to(torch.float32).view(-1, 1, 1, 1)
    x = attn.to(torch.float32).clamp(min=eps)
    if x.requires_grad:  # training: out of place, autograd needs the intermediates
        x = x * (k + 1)
        logs = (x.clamp(min=1.0) if sign == "positive" else x).log()
        logs = logs * valid if valid is not None else logs
    else:  # inference: one fresh [B, H, S, S] tensor, then in-place steps
        logs = x.mul_(k + 1)
        if sign == "positive":
            logs.clamp_(min=1.0)  # log(max(1, x)) = max(0, log x)
        logs.log_()
        if valid is not None:
            logs.mul_(valid)
    other = mask.to(torch.float32)  # the partner position must be pooled too
    w = torch.einsum("bhij,bj->bi", logs, other) if direction == "given" else torch.einsum("bhij,bi->bj", logs, other)
    return w.masked_fill(~mask, 0.0)


def ata_weights(
    attn: torch.Tensor,
    pool_mask: torch.Tensor,
    valid: torch.Tensor | None = None,
    direction: str = "received",
    sign: str = "positive",
    eps: float = EPS,
) -> torch.Tensor:
    """ATA pooling weights: ``ata_raw`` normalised to sum 1 over the pooled tokens. -> [B, S]

    The sign rule. ``positive``: the scores are >= 0 by construction; w~ = w / sum(w).
    ``literal``: w~ = w / sum(w) as in the paper, then negative w~ (mixed signs) are set to 0 and
    the rest renormalised. Note that when every w_i < 0 (usual for an untrained model) the
    literal weights are positive but rank the tokens in reverse (the least attended weighs most).
    Either way a row whose weights are all 0 (or whose sum is 0) falls back to uniform (mean).

    >>> a = torch.tensor([[[[0.75, 0.25], [0.75, 0.25]]]])
    >>> ata_weights(a, torch.ones(1, 2))
    tensor([[1., 0.]])
    """
    mask = _mask(pool_mask)
    w = ata_raw(attn, mask, valid, direction, sign, eps)
    if sign == "literal":
        total = w.sum(-1, keepdim=True)
        safe = torch.where(total == 0, torch.ones_like(total), total)
        w = torch.where(total == 0, torch.zeros_like(w), w / safe).clamp(min=0.0)
    return _normalise(w, mask)


def pool(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum of hidden states. [B, S, D], [B, S] -> [B, D]

    >>> pool(torch.tensor([[[1.0, 0.0], [3.0, 2.0]]]), torch.tensor([[0.5, 0.5]]))
    tensor([[2., 1.]])
    """
    return torch.einsum("bs,bsd->bd", weights.to(hidden.dtype), hidden)


def pooling_weights(
    kind: str,
    pool_mask: torch.Tensor,
    attn: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    direction: str = "received",
    sign: str = "positive",
) -> torch.Tensor:
    """Weights [B, S] for ``kind`` in mean, last, weighted-mean, ata (ata needs ``attn``)."""
    if kind == "mean":
        return mean_weights(pool_mask)
    if kind == "last":
        return last_weights(pool_mask)
    if kind == "weighted-mean":
        return weighted_mean_weights(pool_mask)
    if kind == "ata":
        if attn is None:
            raise ValueError("ATA pooling needs the last layer's attention")
        return ata_weights(attn, pool_mask, valid, direction, sign)
    raise ValueError(f"unknown pooling {kind!r} (choose from ata, mean, last, weighted-mean)")
