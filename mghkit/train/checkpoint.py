"""Checkpoints that resume exactly: trainable weights, optimizer, scheduler, RNG, position.

Layout: ``RUN/checkpoints/step-000010/`` with ``trainable.pt``, ``optimizer.pt``,
``scheduler.pt``, ``rng-rank{R}.pt`` (one per process: the CPU generator and the process's CUDA
device) and ``state.json`` (step, data hash, the arguments that must not change). A checkpoint is
written to a temp dir and renamed, and an old one is renamed before it is removed, so a killed run
never leaves a half checkpoint under a ``step-NNNNNN`` name.
Restoring the RNG sets torch's generators; the training loop does it inside ``fork_rng``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from mghkit.errors import UsageError
from mghkit.jsonl import write_json_atomic

DIR = "checkpoints"


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The CPU generator's state and, for a CUDA ``device``, that device's."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if device is not None and device.type == "cuda":
        if "cuda_device" in state:
            torch.cuda.set_rng_state(state["cuda_device"], device)
        elif "cuda" in state:  # checkpoints of mghkit 0.1 hold every device's state
            torch.cuda.set_rng_state(state["cuda"][device.index or 0], device)


def step_dir(run: Path, step: int) -> Path:
    return run / DIR / f"step-{step:06d}"


def save(run: Path, step: int, *, trainable: dict[str, torch.Tensor], optimizer: Any, scheduler: Any,
         state: dict[str, Any], rank: int = 0, world_size: int = 1, keep: int = 2,
         device: torch.device | None = None) -> Path:  # fmt: skip
    """Write checkpoint ``step``. Rank 0 writes the shared parts; every rank its RNG state.
    Callers put a barrier around this in multi-process runs."""
    target = step_dir(run, step)
    tmp = target.with_name(target.name + ".tmp")
    try:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _torch_save(trainable, tmp / "trainable.pt")
            _torch_save(optimizer.state_dict(), tmp / "optimizer.pt")
            _torch_save(scheduler.state_dict(), tmp / "scheduler.pt")
            write_json_atomic(tmp / "state.json", {**state, "step": step, "world_size": world_size})
        _barrier()
        _torch_save(rng_state(device), tmp / f"rng-rank{rank}.pt")
        _barrier()
    except BaseException:  # a full disk, SIGTERM: no half checkpoint left behind (the last whole one stays)
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank == 0:
        if target.exists():  # a rerun of a step: move the old one out of the way first
            _discard(target)
        tmp.rename(target)
        for old in sorted((run / DIR).glob("step-??????"))[:-keep] if keep > 0 else []:
            _discard(old)
        for stale in [*(run / DIR).glob("step-??????.tmp"), *(run / DIR).glob("step-??????.old")]:
            if stale != tmp:  # what a killed run left (never a step: the glob above cannot see them)
                shutil.rmtree(stale, ignore_errors=True)
    _barrier()
    return target


def _torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file, so a full disk is an OSError naming ``path`` (given a
    path, torch raises a RuntimeError about stream positions instead)."""
    try:
        with path.open("wb") as fp:
            torch.save(obj, fp)
    except OSError as e:
        e.filename = str(path)
        raise


def _discard(ckpt: Path) -> None:
    """Remove a checkpoint: renamed first (one step), so a kill during the removal leaves a
    ``.old`` dir that :func:`latest` never picks, not a half-deleted ``step-NNNNNN``."""
    gone = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(gone, ignore_errors=True)
    ckpt.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)


def latest(run: Path) -> Path | None:
    found = sorted((run / DIR).glob("step-??????")) if (run / DIR).is_dir() else []
    return found[-1] if found else None


def read_state(ckpt: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((ckpt / "state.json").read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{ckpt}: not a readable checkpoint ({e})") from None


def load(ckpt: Path, *, optimizer: Any, scheduler: Any, rank: int = 0,
         device: torch.device | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Restore optimizer, scheduler and this rank's RNG; return the trainable tensors."""
    trainable = torch.load(ckpt / "trainable.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=True))
    rng_file = ckpt / f"rng-rank{rank}.pt"
    if not rng_file.exists():
        raise UsageError(f"{ckpt}: no RNG state for process {rank} (resume with the same number of processes)")
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False), device)
    return dict(trainable)


def _barrier() -> None:
    from mghkit.train.distributed import barrier

    barrier()
