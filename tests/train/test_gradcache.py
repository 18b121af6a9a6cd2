"""GradCache gives the full-batch gradients; plain accumulation does not."""

from __future__ import annotations

import torch

from mghkit.train.gradcache import accumulate_backward, grad_cache_backward
from mghkit.train.loss import info_nce
from tests.train.conftest import embed, random_batch, tiny_decoder


def _grads(model):
    """Every trainable parameter's gradient; each must exist and be non-zero (an empty or all-zero
    set of gradients would make any comparison below pass)."""
    grads = {}
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None, f"{name}: no gradient"
        assert p.grad.abs().sum() > 0, f"{name}: an all-zero gradient"
        grads[name] = p.grad.detach().clone()
    assert grads
    return grads


def _chunks(q, p, n, size):
    return [(q[i : i + size], p[i : i + size], n[i : i + size]) for i in range(0, len(q), size)]


def _forward(model):
    return lambda chunk: tuple(embed(model, ids) for ids in chunk)


def loss_fn(q, p, n):
    return info_nce(q, p, n, temperature=0.05)


def test_grad_cache_gradients_equal_full_batch_gradients():
    q, p, n = random_batch(8)
    model = tiny_decoder()
    full = loss_fn(*(embed(model, x) for x in (q, p, n)))
    full.backward()
    want = _grads(model)

    model.zero_grad(set_to_none=True)
    got_loss = grad_cache_backward(_forward(model), _chunks(q, p, n, 2), loss_fn)
    got = _grads(model)
    assert abs(got_loss.item() - full.item()) < 1e-5
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)

    model.zero_grad(set_to_none=True)  # plain accumulation sees fewer negatives: a different loss and gradient
    acc_loss = accumulate_backward(_forward(model), _chunks(q, p, n, 2), loss_fn)
    acc = _grads(model)
    assert abs(acc_loss.item() - full.item()) > 1e-3
    assert any(not torch.allclose(acc[k], want[k], rtol=1e-3, atol=1e-6) for k in want)


def test_accumulation_of_one_chunk_is_the_full_batch():
    q, p, n = random_batch(4)
    model = tiny_decoder()
    loss_fn(*(embed(model, x) for x in (q, p, n))).backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    accumulate_backward(_forward(model), _chunks(q, p, n, 4), loss_fn)
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, want[name])


def test_grad_cache_replays_dropout_exactly():
    """With dropout on, the re-forward must see the cached forward's masks: the parameter
    gradients then equal those of a grad-enabled forward under the same RNG state."""
    q, p, n = random_batch(4)
    model = tiny_decoder(dropout=0.3).train()
    torch.manual_seed(123)
    loss_fn(*(embed(model, x) for x in (q, p, n))).backward()  # one chunk = full batch, same RNG
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    grad_cache_backward(_forward(model), _chunks(q, p, n, 4), loss_fn)
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, want[name], rtol=1e-4, atol=1e-6)
