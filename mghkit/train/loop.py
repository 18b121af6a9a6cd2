"""``train(args)``: the whole run, from the training file to a run dir that is a model.

    data -> plan of steps (stage by stage) -> trainable encoder (LoRA / QLoRA) -> for each step:
    embed queries, positives and hard negatives -> InfoNCE over everything in the (global) batch
    -> backward (plain accumulation or GradCache) -> sum gradients over processes -> AdamW step
    -> metrics.jsonl, progress, checkpoints -> adapter/, mghkit_model.json, plot, lineage.

The training file is read and checked in full before any model is loaded, so a bad file fails
in seconds. The run dir is written by process 0 only. The public door is ``mghkit.fine_tune``
(:mod:`mghkit.train.run`).

No process-wide state changes: the seeds (LoRA initialisation, dropout) are drawn inside
``torch.random.fork_rng``, so the caller's random streams are as they were, and ``threads`` is
restored at the end. Training is deterministic for a seed and a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mghkit.errors import UsageError
from mghkit.jsonl import write_text_atomic
from mghkit.model.config import EncoderConfig
from mghkit.model.encoder import Encoder
from mghkit.schema import Example
from mghkit.train import checkpoint, rundir
from mghkit.train.args import RESUME_FIXED, TrainArgs
from mghkit.train.data import Step, TrainData, prepare
from mghkit.train.distributed import (
    DistInfo,
    all_reduce_grads,
    all_reduce_sum,
    barrier,
    gather_with_grad,
    init_from_env,
)
from mghkit.train.gradcache import accumulate_backward, grad_cache_backward
from mghkit.train.lora import LoraSettings, auto_dtype, build_trainable_encoder, pick_device, trainable_parameters
from mghkit.train.loss import info_nce
from mghkit.train.progress import Progress
from mghkit.train.run import TrainResult

log = logging.getLogger(__name__)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup to the peak, then linear decay to 0 at ``total``.

    >>> f = lr_lambda(2, 6); [round(f(s), 2) for s in range(6)]
    [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _encoder_config(args: TrainArgs, device: torch.device) -> EncoderConfig:
    base = EncoderConfig(base_model=args.base_model)
    return replace(
        base,
        pooling=args.pooling or base.pooling,
        bidirectional=not args.causal,
        max_length=args.max_length,
        dtype=args.dtype or auto_dtype(device),
    )


class Batcher:
    """Examples -> embeddings (queries with their instruction, documents without).

    ``sort_documents`` (on with ``--group-by-length``): a micro-batch's positives and negatives are
    sorted by token length and embedded in sub-batches of ``len(chunk)`` texts, so a short
    negative is not padded to its long positive's length; the embeddings come back in order.
    ``packing`` (``--packing``): the queries, positives and negatives of a micro-batch share
    padding-free rows (mghkit/model/packing.py), one forward pass.
    An embedding does not depend on the padding around it, so the loss is the same either way
    (tests/train/test_speed.py, tests/model/test_packing.py); only the compute spent on padding falls.
    """

    def __init__(self, encoder: Encoder, *, sort_documents: bool = False, packing: bool = False) -> None:
        self.encoder = encoder
        self.sort_documents = sort_documents
        self.packing = packing
        self.last_tokens = 0
        self.last_padded = 0  # tokens including padding (what the model computes on)

    def __call__(self, chunk: list[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = self.encoder
        self.last_tokens = self.last_padded = 0
        queries = [enc.features(e.query, e.instruction or None) for e in chunk]
        docs = [enc.features(t) for t in [e.positive for e in chunk] + [e.negative for e in chunk]]
        if self.packing:
            q, p, n = self._embed_packed(queries + docs).split(len(chunk))
            return q, p, n
        q = self._embed(queries, len(chunk), False)
        d = self._embed(docs, len(chunk) if self.sort_documents else len(docs), self.sort_documents)
        p, n = d.split(len(chunk))
        return q, p, n

    def _embed_packed(self, feats: list[Any]) -> torch.Tensor:
        batch = self.encoder.collate_packed(feats)
        self.last_tokens += int(batch["attention_mask"].sum())
        self.last_padded += int(batch["attention_mask"].numel())
        return self.encoder.embed(batch)

    def _embed(self, feats: list[Any], size: int, by_length: bool) -> torch.Tensor:
        order = sorted(range(len(feats)), key=lambda i: len(feats[i][0])) if by_length else list(range(len(feats)))
        parts = []
        for k in range(0, len(order), size):
            batch = self.encoder.collate([feats[i] for i in order[k : k + size]])
            parts.append(self.encoder.embed(batch))
            self.last_tokens += int(batch["attention_mask"].sum())
            self.last_padded += int(batch["attention_mask"].numel())
        vectors = torch.cat(parts) if len(parts) > 1 else parts[0]
        if not by_length:
            return vectors
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return vectors[inverse.to(vectors.device)]


@contextmanager
def _own_rng_and_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run with a private copy of the RNG (CPU and ``device``) and ``threads`` torch threads;
    the caller's RNG state and thread count are restored afterwards."""
    before = torch.get_num_threads()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.set_num_threads(before)


def seed_streams(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and ``device``'s (call inside ``fork_rng``; no other device is touched)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def train(
    args: TrainArgs,
    *,
    prepared: tuple[TrainData, list[Step]] | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> TrainResult:
    """Run (or resume) one training run; returns a summary. See the module docstring.
    ``prepared``: the result of ``mghkit.train.data.prepare(args)`` when already computed;
    ``progress``: show a progress display on stderr (``console``)."""
    dist = init_from_env()
    prepared = prepared if prepared is not None else prepare(args, dist.world_size)
    device = pick_device(dist.local_rank, args.device)
    with _own_rng_and_threads(device, args.threads):
        return _train(args, prepared, dist, device, console or Console(stderr=True, soft_wrap=True), progress)


def _train(args: TrainArgs, prepared: tuple[TrainData, list[Step]], dist: DistInfo, device: torch.device,
           console: Console, show_progress: bool) -> TrainResult:  # fmt: skip
    data, plan = prepared
    out = Path(args.out)
    main = dist.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        log.info("train: %s %s: %d examples, %d steps of %d x %d x %d process(es)%s", data.kind, data.path,
                 len(data.examples), len(plan), args.batch_size, args.grad_accum, dist.world_size,
                 ", GradCache" if args.grad_cache else "")  # fmt: skip
        if args.base_model == "local":
            log.info("base model: local (the embedded SmolLM2-135M-Instruct; --base-model to change)")
        if "note" in data.extra:
            log.info("%s", data.extra["note"])

    if args.liger:
        from mghkit.train.speed import liger_runs_on

        liger_runs_on(device.type)  # CUDA without the package: refused before the model loads
    config = _encoder_config(args, device)
    lora = (
        LoraSettings(
            args.lora_r, args.lora_alpha, args.lora_dropout, dtype=args.lora_dtype, sparse_dropout=args.sparse_dropout
        )
        if args.lora
        else None
    )
    encoder = build_trainable_encoder(config, lora=lora, quantize=args.quantize,
                                      gradient_checkpointing=args.gradient_checkpointing, device=device, seed=args.seed)  # fmt: skip
    model = encoder.model
    if args.packing:
        encoder.check_packing()
    from mghkit.train.speed import apply_speedups

    speedups = apply_speedups(model, compile=args.compile, liger=args.liger, device_type=device.type)
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    warmup = args.warmup_steps if args.warmup_steps is not None else math.ceil(0.1 * len(plan))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup, len(plan)))
    seed_streams(args.seed * 1000 + dist.rank + 1, device)  # dropout streams differ per process

    start = 0
    fixed = rundir.portable_args(args, out)
    state = {"data_sha256": data.sha256, "plan_steps": len(plan), "args": {k: fixed[k] for k in RESUME_FIXED},
             "query_tokens": config.query_tokens}  # fmt: skip
    if args.resume:
        start = _resume(out, state, model, optimizer, scheduler, dist, device)
        if state["query_tokens"] != config.query_tokens:  # a run checkpointed before the field: split, as it began
            encoder = encoder.with_config(query_tokens=state["query_tokens"])
        if main:
            log.info("resuming at step %d of %d", start, len(plan))
    if main:
        rundir.save_args(out, args, world_size=dist.world_size, warmup_steps_used=warmup, dtype_used=config.dtype,
                         device_used=str(device), **speedups)  # fmt: skip
        rundir.save_lineage(out, {**data.lineage(), "steps": len(plan), "examples_per_step": len(plan[0].indices)})
        _truncate_metrics(out / rundir.METRICS_FILE, start)

    batcher = Batcher(encoder, sort_documents=args.group_by_length, packing=args.packing)

    def loss_fn(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return info_nce(gather_with_grad(q), gather_with_grad(p), gather_with_grad(n), temperature=args.temperature)

    tokens_seen = padded_seen = 0

    def forward(chunk: list[Example]) -> tuple[torch.Tensor, ...]:
        nonlocal tokens_seen, padded_seen
        result = batcher(chunk)
        if not torch.is_grad_enabled() or not args.grad_cache:  # count each example once
            tokens_seen += batcher.last_tokens
            padded_seen += batcher.last_padded
        return result

    losses: list[float] = []
    reporter = _open_reporter(args, out, fixed, start) if main else None
    progress = Progress(console, total=len(plan), start=start, enabled=main and show_progress)
    t_run = time.perf_counter()
    model.train()
    with progress, _closing(reporter):
        end = len(plan) if args.stop_after is None else min(len(plan), max(start, args.stop_after))
        for i in range(start, end):
            step = plan[i]
            t0 = time.perf_counter()
            tokens_seen = padded_seen = 0
            chunks = _my_chunks(data.examples, step, args, dist)
            backward = grad_cache_backward if args.grad_cache else accumulate_backward
            loss = backward(forward, chunks, loss_fn)
            all_reduce_grads(params)
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - t0
            tokens, padded = all_reduce_sum(tokens_seen), all_reduce_sum(padded_seen)
            value = float(loss.item())
            losses.append(value)
            row = {"step": i + 1, "stage": step.stage, "level": step.level, "loss": round(value, 6), "lr": lr,
                   "examples": len(step.indices), "tokens": int(tokens), "step_s": round(seconds, 3),
                   "tokens_per_s": round(tokens / seconds, 1), "examples_per_s": round(len(step.indices) / seconds, 2),
                   "elapsed_s": round(time.perf_counter() - t_run, 2),
                   "padding": round(1 - tokens / padded, 4) if padded else 0.0}  # fmt: skip
            if main:
                _append_metrics(out / rundir.METRICS_FILE, row)
                reporter.log(row)  # type: ignore[union-attr]
            progress.update(row)
            if (i + 1) % args.save_every == 0 or i + 1 == end:
                _save_checkpoint(out, i + 1, model, optimizer, scheduler, state, dist, args.keep_checkpoints, device)
                if main:
                    _plot(out)
    finished = end >= len(plan)
    if main and finished:
        rundir.save_model(out, encoder, args, data_sha256=data.sha256, steps=len(plan))
    barrier()
    return TrainResult(out=out, steps=end, total_steps=len(plan), final_loss=losses[-1] if losses else float("nan"),
                       losses=losses, seconds=time.perf_counter() - t_run, finished=finished)  # fmt: skip


def _open_reporter(args: TrainArgs, out: Path, config: dict[str, Any], start: int) -> Any:
    from mghkit.train.report import open_reporter

    return open_reporter(args.report_to, out, config=config, start=start)


@contextmanager
def _closing(reporter: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if reporter is not None:
            reporter.close()


def _my_chunks(examples: list[Example], step: Step, args: TrainArgs, dist: DistInfo) -> list[list[Example]]:
    """This process's micro-batches of a step: micro-batch a is global examples
    [a*B*W, (a+1)*B*W), of which process r takes [r*B, (r+1)*B)."""
    b, w = args.batch_size, dist.world_size
    chunks = []
    for a in range(args.grad_accum):
        lo = a * b * w + dist.rank * b
        chunks.append([examples[j] for j in step.indices[lo : lo + b]])
    return chunks


def _resume(out: Path, state: dict[str, Any], model: Any, optimizer: Any, scheduler: Any, dist: DistInfo,
            device: torch.device) -> int:  # fmt: skip
    from mghkit.train.lora import load_trainable_state

    ckpt = checkpoint.latest(out)
    assert ckpt is not None  # checked in prepare()
    saved = checkpoint.read_state(ckpt)
    if saved.get("data_sha256") != state["data_sha256"]:
        raise UsageError(f"{out}: --resume with a different training file (sha256 differs from the run's)")
    state["query_tokens"] = saved.get("query_tokens", "split")  # the run goes on tokenizing queries as it began
    # runs saved before these settings existed trained in file order, with peft's dropout
    legacy = {"group_by_length": False, "sparse_dropout": False}
    changed = [k for k, v in state["args"].items() if saved.get("args", {}).get(k, legacy.get(k)) != v]
    if changed:
        raise UsageError(f"{out}: --resume with changed settings: {', '.join(changed)} (resume needs the same ones)")
    if saved.get("world_size", 1) != dist.world_size:
        raise UsageError(f"{out}: the run used {saved.get('world_size')} process(es); resume with the same number")
    trainable = checkpoint.load(ckpt, optimizer=optimizer, scheduler=scheduler, rank=dist.rank, device=device)
    load_trainable_state(model, trainable)
    return int(saved["step"])


def _save_checkpoint(out: Path, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any],
                     dist: DistInfo, keep: int, device: torch.device) -> None:  # fmt: skip
    from mghkit.train.lora import trainable_state

    checkpoint.save(out, step, trainable=trainable_state(model), optimizer=optimizer, scheduler=scheduler,
                    state=state, rank=dist.rank, world_size=dist.world_size, keep=keep, device=device)  # fmt: skip


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    """One line per step, appended whole (a full disk: an OSError naming the file)."""
    try:
        with path.open("a", encoding="utf-8") as fp:
            fp.write(json.dumps(row) + "\n")
    except OSError as e:
        e.filename = str(path)
        raise


def _plot(out: Path) -> None:
    """loss.png; a plot that cannot be drawn or written costs a warning, never the run."""
    from mghkit.train.plot import plot_metrics

    try:
        plot_metrics(out / rundir.METRICS_FILE, out / rundir.PLOT_FILE)
    except (OSError, ValueError, RuntimeError) as e:
        log.warning("%s: cannot draw the loss plot (%s); training goes on", out / rundir.PLOT_FILE, e)


def _truncate_metrics(path: Path, start: int) -> None:
    """Keep the rows of steps <= ``start`` (a resumed run rewrites what came after); a line a
    killed run left half-written is dropped."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= start:
            keep.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in keep))
