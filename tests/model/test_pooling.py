"""Pooling functions on tiny tensors with weights worked out by hand (docs/method.md section 3)."""

from __future__ import annotations

import math

import pytest
import torch

from mghkit.model.pooling import (
    ata_raw,
    ata_weights,
    last_weights,
    mean_weights,
    pool,
    pooling_weights,
    weighted_mean_weights,
)

LN2 = math.log(2)


def attn(*rows: list[float]) -> torch.Tensor:
    """One sequence, one head: [1, 1, S, S]."""
    return torch.tensor([rows], dtype=torch.float32).unsqueeze(0)


def close(a: torch.Tensor, b: list[float], tol: float = 1e-4) -> bool:
    return torch.allclose(a, torch.tensor(b, dtype=a.dtype), atol=tol)


# K = 3 pooled tokens, uniform = 1/(K+1) = 1/4; (K+1)a = 2 where a = 1/2, 1 where a = 1/4 (log 0).
THREE = attn([0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.25, 0.25, 0.5])


def test_received_reads_columns_given_reads_rows():
    # received: column sums = [2 ln2, 0, ln2]; given: row sums = [ln2, ln2, ln2]
    assert close(ata_raw(THREE, torch.ones(1, 3), direction="received"), [[2 * LN2, 0.0, LN2]])
    assert close(ata_raw(THREE, torch.ones(1, 3), direction="given"), [[LN2, LN2, LN2]])
    assert close(ata_weights(THREE, torch.ones(1, 3), direction="received"), [[2 / 3, 0.0, 1 / 3]])
    assert close(ata_weights(THREE, torch.ones(1, 3), direction="given"), [[1 / 3, 1 / 3, 1 / 3]])


def test_heads_are_summed():
    two_heads = torch.cat([THREE, THREE.transpose(-1, -2).contiguous()], dim=1)  # [1, 2, 3, 3]
    # head 2 is head 1 transposed, so received(total) = received(h1) + given(h1)
    expected = ata_raw(THREE, torch.ones(1, 3), direction="received") + ata_raw(
        THREE, torch.ones(1, 3), direction="given"
    )
    assert torch.allclose(ata_raw(two_heads, torch.ones(1, 3)), expected)


# Position 0 is an instruction token (not pooled) that soaks up attention; K = 2, (K+1) = 3.
# Pooled pairs: row1 -> keys (1, 2): 3*0.3, 3*0.2; row2 -> 3*0.3, 3*0.1. Every log is negative.
SOAK = attn([1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1])
SOAK_POOL = torch.tensor([[0, 1, 1]])


def test_literal_all_negative_reverses_the_ranking():
    col1 = 2 * math.log(0.9)  # -0.2107: the more attended token
    col2 = math.log(0.6) + math.log(0.3)  # -1.7148
    assert close(ata_raw(SOAK, SOAK_POOL, sign="literal"), [[0.0, col1, col2]])
    # w / sum(w) with a negative sum: positive weights, but the LESS attended token weighs more
    total = col1 + col2
    assert close(ata_weights(SOAK, SOAK_POOL, sign="literal"), [[0.0, col1 / total, col2 / total]])
    assert col2 / total > col1 / total


def test_positive_sign_with_nothing_above_uniform_falls_back_to_mean():
    assert close(ata_raw(SOAK, SOAK_POOL, sign="positive"), [[0.0, 0.0, 0.0]])
    assert close(ata_weights(SOAK, SOAK_POOL, sign="positive"), [[0.0, 0.5, 0.5]])


def test_literal_mixed_signs_clips_negative_weights_and_renormalises():
    # every row [0.7, 0.2, 0.1], K = 3: logs ln 2.8, ln 0.8, ln 0.4 per row, three rows
    rows = attn([0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1])
    w = [3 * math.log(2.8), 3 * math.log(0.8), 3 * math.log(0.4)]  # [3.09, -0.67, -2.75], sum < 0
    total = sum(w)
    normalised = [x / total for x in w]  # [-9.38, 2.03, 8.34]
    kept = [max(0.0, x) for x in normalised]
    assert close(ata_weights(rows, torch.ones(1, 3), sign="literal"), [[x / sum(kept) for x in kept]])
    # the positive rule keeps only above-uniform attention: all weight on token 0
    assert close(ata_weights(rows, torch.ones(1, 3), sign="positive"), [[1.0, 0.0, 0.0]])


def test_causally_masked_pairs_are_left_out_not_clamped():
    # causal: row 0 sees only itself (a = 1); row 1 sees both (1/2 each). K = 2, (K+1) = 3.
    a = attn([1.0, 0.0], [0.5, 0.5])
    tril = torch.tril(torch.ones(2, 2, dtype=torch.bool)).view(1, 1, 2, 2)
    raw = ata_raw(a, torch.ones(1, 2), valid=tril, sign="literal")
    assert close(raw, [[math.log(3) + math.log(1.5), math.log(1.5)]])
    # without the mask the zero would be clamped to eps and dominate with log(3e-6) = -12.7
    assert ata_raw(a, torch.ones(1, 2), sign="literal")[0, 1] < -12


def test_padding_gets_no_weight_and_changes_nothing():
    padded = torch.zeros(1, 1, 4, 4)
    padded[0, 0, :3, :3] = THREE[0, 0]
    padded[0, 0, 3] = 0.25  # garbage row/column for the pad position
    padded[0, 0, :, 3] = 0.3
    mask = torch.tensor([[1, 1, 1, 0]])
    for direction in ("received", "given"):
        for sign in ("positive", "literal"):
            w = ata_weights(padded, mask, direction=direction, sign=sign)
            assert w[0, 3] == 0
            assert torch.allclose(w[:, :3], ata_weights(THREE, torch.ones(1, 3), direction=direction, sign=sign))


def test_left_padding_matches_right_padding():
    right = torch.zeros(1, 1, 4, 4)
    right[0, 0, :3, :3] = THREE[0, 0]
    left = torch.zeros(1, 1, 4, 4)
    left[0, 0, 1:, 1:] = THREE[0, 0]
    wr = ata_weights(right, torch.tensor([[1, 1, 1, 0]]))
    wl = ata_weights(left, torch.tensor([[0, 1, 1, 1]]))
    assert torch.allclose(wr[0, :3], wl[0, 1:])


@pytest.mark.parametrize("direction", ["received", "given"])
@pytest.mark.parametrize("sign", ["positive", "literal"])
def test_ata_weights_are_a_distribution_over_pooled_tokens(direction, sign):
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(3, 2, 6, 6, generator=g) * 3, dim=-1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]])
    w = ata_weights(a, mask, direction=direction, sign=sign)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(3))
    assert (w[mask == 0] == 0).all()


def test_mean_last_weighted_mean_by_hand():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    assert close(mean_weights(mask), [[1 / 3, 1 / 3, 1 / 3, 0], [0, 1 / 3, 1 / 3, 1 / 3]])
    assert close(last_weights(mask), [[0, 0, 1, 0], [0, 0, 0, 1]])
    assert close(weighted_mean_weights(mask), [[1 / 6, 2 / 6, 3 / 6, 0], [0, 1 / 6, 2 / 6, 3 / 6]])


def test_pool_is_the_weighted_sum():
    hidden = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    v = pool(hidden, torch.tensor([[0.5, 0.0, 0.5]]))
    assert close(v, [[4.0, 5.0, 6.0, 7.0]])


def test_pooling_weights_dispatch_and_errors():
    mask = torch.ones(1, 3)
    assert torch.equal(pooling_weights("ata", mask, THREE), ata_weights(THREE, mask))
    with pytest.raises(ValueError, match="needs the last layer"):
        pooling_weights("ata", mask)
    with pytest.raises(ValueError, match="choose from"):
        pooling_weights("max", mask)
    with pytest.raises(ValueError, match="direction"):
        ata_raw(THREE, mask, direction="sideways")
