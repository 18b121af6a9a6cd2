"""InfoNCE on tiny tensors against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mghkit.train.loss import info_nce


def test_matches_a_hand_computed_value():
    # B=2, D=2, no normalisation, temperature 0.5. Candidates: p0, p1, n0, n1.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    n = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # row 0 scores q0.[p0,p1,n0,n1] = [1, .5, 0, 1] / .5 = [2, 1, 0, 2], target 0
    # row 1 scores q1.[p0,p1,n0,n1] = [0, .5, 1, 1] / .5 = [0, 1, 2, 2], target 1
    row0 = -2 + math.log(math.exp(2) + math.exp(1) + 1 + math.exp(2))
    row1 = -1 + math.log(1 + math.exp(1) + math.exp(2) + math.exp(2))
    got = info_nce(q, p, n, temperature=0.5, normalize=False)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_normalises_to_cosine_and_uses_in_batch_positives_only_without_negatives():
    q = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    # cosine: row i = [1, 0] for its own positive first; temperature 1
    expected = -1 + math.log(math.e + 1)
    assert info_nce(q, p, None, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_the_default_temperature_is_point_02_and_sharpens_the_loss():
    torch.manual_seed(0)
    q, p, n = torch.randn(3, 4, 8).unbind(0)
    assert info_nce(q, p, n).item() == pytest.approx(info_nce(q, p, n, temperature=0.02).item())
    p_good = q + 0.01 * torch.randn_like(q)  # positives nearly equal to the queries
    assert info_nce(q, p_good, n, temperature=0.02).item() < info_nce(q, p_good, n, temperature=1.0).item()


def test_gradient_flows_to_all_three_inputs():
    q, p, n = (torch.randn(2, 4, requires_grad=True) for _ in range(3))
    info_nce(q, p, n).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, p, n))


@pytest.mark.parametrize("bad", [dict(p=torch.zeros(3, 4)), dict(temperature=0.0)])
def test_rejects_bad_shapes_and_temperature(bad):
    args = dict(q=torch.zeros(2, 4), p=torch.zeros(2, 4), n=torch.zeros(2, 4), temperature=0.02) | bad
    with pytest.raises(ValueError):
        info_nce(args["q"], args["p"], args["n"], temperature=args["temperature"])
