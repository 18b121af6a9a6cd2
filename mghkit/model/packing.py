"""Padding-free (packed) batches: several texts share one row, each attending only to itself.

    feats -> pack_rows(lengths, capacity)       first-fit decreasing: which texts share a row
          -> collate_packed(feats, pad_id)      input_ids, position_ids restarting at 0 per text,
                                                pool_mask, segment_ids [R, S]; segments [N, 3]
          -> block_mask(segment_ids, causal)    [R, 1, S, S]: a token sees only its own text
          -> the model (sdpa / eager: this 4D mask; flash attention: position_ids alone, varlen)
          -> unpack(hidden, segments, width)    [N, L, D], as a padded batch would give it
          -> unpack_pairs(attn, segments, width) [N, H, L, L] for ATA

The linear layers (projections, MLP: most of a decoder's compute at embedding lengths) then run
on real tokens only; only the short tail of each row is padding. Under sdpa or eager the
attention still spans the whole row with the block mask (a row is at most as long as the longest
text, so that part costs about what a length-sorted padded batch costs); flash attention's varlen
kernel computes each text's block alone. Each text gets exactly the positions and the mask it
would get alone, so the vectors equal the padded path's (tests/model/test_packing.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Features = tuple[list[int], list[int]]  # (token ids, pool flags), as Encoder.features returns


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` in rows of total length <= ``capacity``: first-fit decreasing.

    >>> pack_rows([5, 2, 3, 4, 1], 6)
    [[0, 4], [3, 1], [2]]
    """
    if any(n > capacity for n in lengths):
        raise ValueError(f"a text of {max(lengths)} tokens does not fit a row of {capacity}")
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(capacity - lengths[i])
    return rows


def collate_packed(feats: Sequence[Features], pad_id: int, capacity: int | None = None) -> dict[str, torch.Tensor]:
    """Pack ``feats`` into rows as long as the longest text (or ``capacity``).

    -> input_ids, position_ids, pool_mask, attention_mask (1 = a real token), segment_ids (the text
    index of each token, -1 on the row tails) [R, S], and segments [N, 3] = (row, start, length)
    of each text, in input order.

    >>> b = collate_packed([([7, 8, 9], [1, 1, 1]), ([5], [1]), ([6, 6], [0, 1])], pad_id=0)
    >>> b["input_ids"].tolist(), b["position_ids"].tolist(), b["segments"].tolist()
    ([[7, 8, 9], [6, 6, 5]], [[0, 1, 2], [0, 1, 0]], [[0, 0, 3], [1, 2, 1], [1, 0, 2]])
    """
    lengths = [len(ids) for ids, _ in feats]
    width = capacity or max(lengths)
    rows = pack_rows(lengths, width)
    out = {k: torch.full((len(rows), width), fill, dtype=torch.long)
           for k, fill in (("input_ids", pad_id), ("position_ids", 0), ("pool_mask", 0), ("attention_mask", 0),
                           ("segment_ids", -1))}  # fmt: skip
    segments = torch.zeros(len(feats), 3, dtype=torch.long)
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            ids, pooled = feats[i]
            end = start + len(ids)
            out["input_ids"][r, start:end] = torch.tensor(ids)
            out["position_ids"][r, start:end] = torch.arange(len(ids))
            out["pool_mask"][r, start:end] = torch.tensor(pooled)
            out["attention_mask"][r, start:end] = 1
            out["segment_ids"][r, start:end] = i
            segments[i] = torch.tensor([r, start, len(ids)])
            start = end
    out["segments"] = segments
    return out


def block_mask(segment_ids: torch.Tensor, causal: bool) -> torch.Tensor:
    """[R, S] segment ids -> [R, 1, S, S] bool, True = query i may attend to key j: same text (and
    j <= i when ``causal``). A tail position attends to itself only, so no row of the softmax is
    empty.

    >>> block_mask(torch.tensor([[0, 0, 1, -1]]), causal=False)[0, 0].int().tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    """
    s = segment_ids.shape[1]
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] >= 0)
    eye = torch.eye(s, dtype=torch.bool, device=segment_ids.device)
    if causal:
        same = same & torch.tril(torch.ones(s, s, dtype=torch.bool, device=segment_ids.device))
    return (same | eye)[:, None]


def _positions(segments: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column index in the packed row [N, width] of each text's t-th token (clamped), and t < length."""
    t = torch.arange(width, device=segments.device)
    inside = t[None, :] < segments[:, 2:3]
    cols = segments[:, 1:2] + torch.where(inside, t[None, :], 0)
    return cols, inside


def unpack(x: torch.Tensor, segments: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """[R, S, ...] packed -> [N, width, ...] one text a row, right-padded with zeros.

    >>> unpack(torch.tensor([[7, 8, 9], [6, 6, 5]]), torch.tensor([[0, 0, 3], [1, 2, 1], [1, 0, 2]])).tolist()
    [[7, 8, 9], [5, 0, 0], [6, 6, 0]]
    """
    segments = segments.to(x.device)
    width = width or int(segments[:, 2].max())
    cols, inside = _positions(segments, width)
    out = x[segments[:, :1], cols]
    shape = inside.shape + (1,) * (out.dim() - 2)
    return out * inside.view(shape).to(out.dtype) if out.is_floating_point() else out * inside.view(shape)


def unpack_pairs(x: torch.Tensor, segments: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """[R, H, S, S] packed pairs (attention) -> [N, H, width, width]: each text's own block, zero outside."""
    segments = segments.to(x.device)
    width = width or int(segments[:, 2].max())
    cols, inside = _positions(segments, width)
    rows = segments[:, 0].view(-1, 1, 1)
    out = x[rows, :, cols[:, :, None], cols[:, None, :]]  # advanced indices first: [N, L, L, H]
    keep = (inside[:, :, None] & inside[:, None, :])[..., None]
    out = out * keep.to(out.dtype) if out.is_floating_point() else out & keep
    return out.permute(0, 3, 1, 2)
