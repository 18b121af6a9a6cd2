"""Sparse dropout (mghkit/train/dropout.py): F.dropout's i.i.d. Bernoulli mask and scaling, its
gradient, and its place in LoRA training (peft's dropout modules swapped, GradCache replay)."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

import mghkit
from mghkit.model.config import EncoderConfig
from mghkit.train.dropout import SparseDropout, dropped_positions, sparse_dropout, use_sparse_dropout
from mghkit.train.gradcache import grad_cache_backward
from mghkit.train.loop import Batcher
from mghkit.train.lora import LoraSettings, build_trainable_encoder
from mghkit.train.loss import info_nce
from tests.train.test_speed import FAST, _examples, _write


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_each_element_is_dropped_with_probability_p_and_the_rest_scaled(p):
    """Drawing ``-n ln(1 - p)`` positions on average (a Poisson count) drops a fraction p; a fixed
    count of ``p n`` positions with replacement would drop 1 - exp(-p) (0.39 at p 0.5)."""
    torch.manual_seed(0)
    n = 2_000_000
    out = sparse_dropout(torch.ones(n), p)
    dropped = float((out == 0).double().mean())
    assert dropped == pytest.approx(p, abs=5 * (p * (1 - p) / n) ** 0.5)
    assert torch.all(out[out != 0] == 1 / (1 - p))


def test_the_dropped_count_varies_as_a_binomial_and_neighbours_are_independent():
    """Independent Bernoulli(p) elements: the count in a tensor of n has variance n p (1 - p) (a
    fixed count would give 0), and two neighbours are both dropped with probability p squared."""
    torch.manual_seed(0)
    p, n = 0.2, 1000
    masks = torch.stack([sparse_dropout(torch.ones(n), p) == 0 for _ in range(2000)]).double()
    counts = masks.sum(1).tolist()
    assert statistics.mean(counts) == pytest.approx(n * p, rel=0.01)
    assert statistics.variance(counts) == pytest.approx(n * p * (1 - p), rel=0.15)
    both = float((masks[:, :-1] * masks[:, 1:]).mean())
    assert both == pytest.approx(p * p, rel=0.03)


def test_the_gradient_passes_the_kept_elements_scaled_and_zeroes_the_dropped():
    torch.manual_seed(1)
    x = (torch.rand(64, 48) + 0.5).requires_grad_()  # no zeros: out == 0 marks exactly the dropped
    out = sparse_dropout(x, 0.3)
    g = torch.randn_like(out)
    out.backward(g)
    kept = (out != 0).float()
    assert 0 < float(kept.mean()) < 1
    torch.testing.assert_close(out, x.detach() * kept / 0.7)
    torch.testing.assert_close(x.grad, g * kept / 0.7)


def test_a_strided_input_is_masked_by_its_logical_positions():
    torch.manual_seed(2)
    x = (torch.rand(48, 64) + 0.5).t().requires_grad_()  # not contiguous
    out = sparse_dropout(x, 0.3)
    out.backward(torch.ones_like(out))
    assert out.shape == x.shape and torch.equal(x.grad == 0, out == 0)


def test_eval_mode_and_zero_p_return_the_input_and_bad_p_is_refused():
    x = torch.randn(8, 8)
    assert sparse_dropout(x, 0.0) is x and sparse_dropout(x, 0.5, training=False) is x
    module = SparseDropout(0.5).eval()
    assert module(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sparse_dropout(x, 1.0)


def test_the_same_seed_draws_the_same_mask():
    torch.manual_seed(7)
    a = dropped_positions(10_000, 0.1)
    torch.manual_seed(7)
    assert torch.equal(a, dropped_positions(10_000, 0.1))


def _encoder(model_dir, dropout: float, sparse: bool):
    config = EncoderConfig(base_model=str(model_dir), pooling="mean", max_length=32, bidirectional=False)
    return build_trainable_encoder(config, lora=LoraSettings(8, 16, dropout, sparse_dropout=sparse),
                                   gradient_checkpointing=False)  # fmt: skip


def test_lora_training_swaps_every_peft_dropout_and_keeps_the_weights(tiny_model_dir):
    sparse, plain = _encoder(tiny_model_dir, 0.1, True), _encoder(tiny_model_dir, 0.1, False)
    kinds = lambda enc: [type(m) for m in enc.model.modules() if isinstance(m, (SparseDropout, torch.nn.Dropout))]  # noqa: E731
    layers = sum(1 for n, _ in plain.model.named_modules() if n.endswith("lora_A"))
    assert layers > 0 and kinds(sparse) == [SparseDropout] * layers
    assert set(kinds(plain)) == {torch.nn.Dropout}
    assert sparse.model.state_dict().keys() == plain.model.state_dict().keys()
    assert use_sparse_dropout(sparse.model) == 0  # nothing left to swap


def test_grad_cache_replays_the_sparse_masks_exactly(tiny_model_dir):
    """GradCache re-embeds each micro-batch under the RNG state of its first pass: the sparse masks
    (a CPU Poisson count + positions) must come out the same, so with one chunk the gradients equal a
    plain backward's under the same seed."""
    enc = _encoder(tiny_model_dir, 0.3, True)
    chunk = _examples(per_stage=8, stages=1)[:4]
    batcher = Batcher(enc)

    def loss_fn(q, p, n):
        return info_nce(q, p, n, temperature=0.05)

    def grads():
        out = {n: p.grad.clone() for n, p in enc.model.named_parameters() if p.requires_grad and p.grad is not None}
        enc.model.zero_grad(set_to_none=True)
        return out

    torch.manual_seed(5)
    loss_fn(*batcher(chunk)).backward()
    want = grads()
    torch.manual_seed(5)
    grad_cache_backward(batcher, [chunk], loss_fn)
    got = grads()
    assert want and got.keys() == want.keys()
    for name, g in got.items():
        torch.testing.assert_close(g, want[name], rtol=1e-4, atol=1e-6)
    torch.manual_seed(6)  # another seed, other masks: the comparison above can tell masks apart
    loss_fn(*batcher(chunk)).backward()
    assert any(not torch.allclose(g, want[n], rtol=1e-4, atol=1e-6) for n, g in grads().items())


def test_fine_tune_records_the_setting_and_trains_either_way(tmp_path, tiny_model_dir):
    data = _write(tmp_path / "train.jsonl", _examples(per_stage=4, stages=1))
    losses = {}
    for sparse in (True, False):
        run = tmp_path / f"run-{sparse}"
        result = mghkit.fine_tune(data, base_model=str(tiny_model_dir), out=run, progress=False,
                                  **{**FAST, "lora_dropout": 0.2, "sparse_dropout": sparse})  # fmt: skip
        assert json.loads((run / "training_args.json").read_text())["sparse_dropout"] is sparse
        losses[sparse] = result.losses
    assert all(map(torch.isfinite, map(torch.tensor, losses[True] + losses[False])))
    assert losses[True] != losses[False]  # other masks (the same distribution, another random stream)
