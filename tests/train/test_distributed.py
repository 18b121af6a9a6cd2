"""Two processes on CPU (gloo): gathered negatives give the single-process loss and gradients."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from mghkit.train.distributed import all_reduce_grads, gather_with_grad
from mghkit.train.gradcache import grad_cache_backward
from mghkit.train.loss import info_nce
from tests.train.conftest import embed, random_batch, tiny_decoder

B_GLOBAL = 8


def loss_fn(q, p, n):
    return info_nce(gather_with_grad(q), gather_with_grad(p), gather_with_grad(n), temperature=0.05)


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        for grad_cache in (False, True):
            model = tiny_decoder()
            q, p, n = (x.chunk(world)[rank] for x in random_batch(B_GLOBAL))  # this process's shard
            forward = lambda c, model=model: tuple(embed(model, ids) for ids in c)  # noqa: E731
            if grad_cache:
                loss = grad_cache_backward(forward, [(q[:2], p[:2], n[:2]), (q[2:], p[2:], n[2:])], loss_fn)
            else:
                loss = loss_fn(*forward((q, p, n)))
                loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            all_reduce_grads(params)
            out[(rank, grad_cache)] = (loss.item(), [p.grad.clone() for p in params])
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process():
    model = tiny_decoder()
    loss = loss_fn(*(embed(model, x) for x in random_batch(B_GLOBAL)))
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _run_two():
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        return dict(out)


def test_two_gloo_processes_give_the_single_process_loss_and_gradients():
    want_loss, want_grads = _single_process()
    got = _run_two()
    for grad_cache in (False, True):
        for rank in (0, 1):
            loss, grads = got[(rank, grad_cache)]
            assert abs(loss - want_loss) < 1e-5, (grad_cache, rank, loss, want_loss)
            for g, w in zip(grads, want_grads, strict=True):
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
