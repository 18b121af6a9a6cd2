"""Training throughput and memory: mghkit's loop vs sentence-transformers' MNRL trainer, and
GradCache at an effective batch of 512 vs a plain batch of 512.

Every configuration runs in its own subprocess (so peak RSS is its own), alternating, repeated.

1. Throughput: the same model, data and batch through ``mghkit.fine_tune`` and through
   ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` (scale 50 = 1/0.02), both
   with the same LoRA (r 16 on q,k,v,o,gate,up,down), fp32, no gradient checkpointing, mean
   pooling, (query, positive, hard negative) triplets from the bundled man-pages set.
   Steady-state step time = median over the steps after the first two.
2. Memory: one optimizer step at an effective batch of 512 (query + positive + negative each),
   plain (batch 512) vs GradCache (batch 32 x grad-accum 16), on a small random Llama.

Environment knobs: BENCH_TRAIN_MODEL (default ``local``), BENCH_TRAIN_STEPS (6),
BENCH_TRAIN_REPEATS (2), BENCH_TRAIN_MAXLEN (64).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 8
INSTRUCTION_FORMAT = "Instruct: {task}\nQuery: {query}"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- data
def write_data(folder: Path, n: int) -> Path:
    """A one-stage curriculum file of ``n`` man-pages examples (BM25 'high' negatives)."""
    from mghkit.demo import manpages_split
    from mghkit.mining import mine

    split = manpages_split(0)
    path = folder / "bench.jsonl"
    with path.open("w") as fp:
        for t in mine(split.train_pairs[:n], corpus=list(split.corpus.values())):
            rec = {"id": t.id, "stage": 1, "level": "high", "instruction": t.instruction, "query": t.query,
                   "positive": t.positive_example, "negative": t.hard_negative_examples[0].text}  # fmt: skip
            fp.write(json.dumps(rec) + "\n")
    return path


def write_synthetic(folder: Path, n: int, words: int = 20) -> Path:
    import random

    rng = random.Random(0)
    vocab = [
        "sodium",
        "salt",
        "lamp",
        "earth",
        "sun",
        "orbit",
        "latin",
        "name",
        "symbol",
        "list",
        "files",
        "grep",
        "manual",
        "pages",
    ]
    path = folder / "synthetic.jsonl"
    with path.open("w") as fp:
        for i in range(n):
            t = [" ".join(rng.choices(vocab, k=words)) for _ in range(3)]
            rec = {"id": f"s{i}", "stage": 1, "level": "high", "query": t[0], "positive": t[1], "negative": t[2]}
            fp.write(json.dumps(rec) + "\n")
    return path


# ----------------------------------------------------------------------------- workers
def worker_mghkit(data: str, out: str, model: str, steps: int, maxlen: int, extra: dict[str, Any]) -> dict[str, Any]:
    from mghkit.train.run import fine_tune

    given = dict(out=out, base_model=model, steps=steps, batch_size=BATCH, max_length=maxlen, save_every=10**6,
                 gradient_checkpointing=False, warmup_steps=0, pooling="mean") | extra  # fmt: skip
    fine_tune(data, progress=False, **given)
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    steady = rows[2:] or rows
    return {"step_s": statistics.median(r["step_s"] for r in steady),
            "tokens_per_step": statistics.mean(r["tokens"] for r in steady), "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def worker_st(data: str, out: str, model: str, steps: int, maxlen: int) -> dict[str, Any]:
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import TrainerCallback

    from mghkit.model.loading import resolve_model_path
    from mghkit.train.lora import LORA_TARGETS

    path = resolve_model_path(model)
    tf = Transformer(path, max_seq_length=maxlen)
    if tf.tokenizer.pad_token is None:
        tf.tokenizer.pad_token = tf.tokenizer.eos_token
    st = SentenceTransformer(modules=[tf, Pooling(tf.get_embedding_dimension(), "mean")], device="cpu")
    # transformers' add_adapter wants peft >= 0.22; wrap the HF model with peft directly (same LoRA).
    tf.model = get_peft_model(tf.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                   target_modules=list(LORA_TARGETS)))  # fmt: skip
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    ds = datasets.Dataset.from_dict({
        "anchor": [INSTRUCTION_FORMAT.format(task=r["instruction"], query=r["query"]) for r in rows],
        "positive": [r["positive"] for r in rows], "negative": [r["negative"] for r in rows]})  # fmt: skip
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter() - self.t0)

    args = SentenceTransformerTrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=2e-4, warmup_steps=0,
        save_strategy="no", report_to="none", logging_steps=10**6, dataloader_drop_last=True, seed=0,
        use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(st, scale=50.0), callbacks=[Timer()])  # fmt: skip
    trainer.train()
    steady = times[2:] or times
    return {"step_s": statistics.median(steady), "peak_rss_mb": _peak_rss_mb()}


def worker_memory(data: str, out: str, model: str, batch: int, accum: int, grad_cache: bool) -> dict[str, Any]:
    from mghkit.train.run import fine_tune

    t0 = time.perf_counter()
    fine_tune(data, out=out, base_model=model, steps=1, batch_size=batch, grad_accum=accum, grad_cache=grad_cache,
              max_length=64, gradient_checkpointing=False, pooling="mean", progress=False)  # fmt: skip
    return {"peak_rss_mb": _peak_rss_mb(), "seconds": time.perf_counter() - t0}


def _spawn(kind: str, **kw: Any) -> dict[str, Any]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "bench.bench_train", "--worker", kind, json.dumps(kw)],
                       capture_output=True, env=env, cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{r.stderr.decode()[-3000:]}")
    return dict(json.loads(r.stdout.decode().strip().splitlines()[-1]))


# ----------------------------------------------------------------------------- report
def run() -> str:
    model = os.environ.get("BENCH_TRAIN_MODEL", "local")
    steps, repeats, maxlen = (
        _env_int("BENCH_TRAIN_STEPS", 6),
        _env_int("BENCH_TRAIN_REPEATS", 2),
        _env_int("BENCH_TRAIN_MAXLEN", 64),
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = str(write_data(folder, BATCH * steps))
        ours, theirs = [], []
        for rep in range(repeats):
            ours.append(_spawn("mghkit", data=data, out=str(folder / f"m{rep}"), model=model, steps=steps, maxlen=maxlen,
                               extra={}))  # fmt: skip
            theirs.append(_spawn("st", data=data, out=str(folder / f"s{rep}"), model=model, steps=steps, maxlen=maxlen))
            print(f"  repeat {rep}: mghkit {ours[-1]['step_s']:.2f} s/step, ST {theirs[-1]['step_s']:.2f} s/step",
                  file=sys.stderr, flush=True)  # fmt: skip
        ratios = [t["step_s"] / o["step_s"] for o, t in zip(ours, theirs, strict=True)]

        from mghkit.model.tiny import save_tiny_model

        small = str(save_tiny_model(folder / "small", hidden=128, layers=2))
        synth = str(write_synthetic(folder, 512))
        mem: dict[str, list[dict[str, Any]]] = {"baseline (batch 8)": [], "plain batch 512": [],
                                                "GradCache 32 x 16 = 512": []}  # fmt: skip
        for rep in range(repeats):
            mem["baseline (batch 8)"].append(_spawn("memory", data=synth, out=str(folder / f"b{rep}"), model=small,
                                                    batch=8, accum=1, grad_cache=False))  # fmt: skip
            mem["plain batch 512"].append(_spawn("memory", data=synth, out=str(folder / f"p{rep}"), model=small,
                                                 batch=512, accum=1, grad_cache=False))  # fmt: skip
            mem["GradCache 32 x 16 = 512"].append(_spawn("memory", data=synth, out=str(folder / f"g{rep}"), model=small,
                                                         batch=32, accum=16, grad_cache=True))  # fmt: skip

    tok_per_ex = statistics.mean(o["tokens_per_step"] for o in ours) / BATCH
    o_s, t_s = statistics.median(o["step_s"] for o in ours), statistics.median(t["step_s"] for t in theirs)
    lines = [
        "## train",
        "",
        f"Model `{model}` (fp32, LoRA r 16 on all 7 projections, no gradient checkpointing), batch {BATCH} "
        f"(query + positive + hard negative), max length {maxlen}, {steps} steps per run (median of steps 3+), "
        f"{repeats} repeats alternating, each run in its own process; {os.environ.get('BENCH_TRAIN_THREADS', os.cpu_count())} "
        f"torch thread(s) per run on a shared {os.cpu_count()}-CPU machine (load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "| trainer | s/step | examples/s | tokens/s | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
        f"| mghkit train | {o_s:.2f} | {BATCH / o_s:.2f} | {BATCH * tok_per_ex / o_s:,.0f} | "
        f"{max(o['peak_rss_mb'] for o in ours):,.0f} |",
        f"| sentence-transformers MNRL trainer | {t_s:.2f} | {BATCH / t_s:.2f} | {BATCH * tok_per_ex / t_s:,.0f} | "
        f"{max(t['peak_rss_mb'] for t in theirs):,.0f} |",
        "",
        f"**Throughput ratio mghkit / sentence-transformers: {statistics.median(ratios):.2f}x** "
        f"(per repeat: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.0x). Tokens/s counts mghkit's "
        f"non-padding tokens per example ({tok_per_ex:.0f}) for both (same texts).",
        "",
        "GradCache vs plain batch at an effective contrastive batch of 512 (1,536 texts per step), one optimizer "
        "step on a small random Llama (hidden 128, 2 layers, vocab ~300), ~20-word texts:",
        "",
        "| configuration | peak RSS MB (median) | seconds (whole process) |",
        "|---|---:|---:|",
    ]
    for name, rows in mem.items():
        lines.append(f"| {name} | {statistics.median(r['peak_rss_mb'] for r in rows):,.0f} | "
                     f"{statistics.median(r['seconds'] for r in rows):.1f} |")  # fmt: skip
    base = statistics.median(r["peak_rss_mb"] for r in mem["baseline (batch 8)"])
    plain = statistics.median(r["peak_rss_mb"] for r in mem["plain batch 512"]) - base
    cached = statistics.median(r["peak_rss_mb"] for r in mem["GradCache 32 x 16 = 512"]) - base
    lines += ["", f"Above the batch-8 baseline: plain batch 512 needs {plain:,.0f} MB more, GradCache {cached:,.0f} MB "
              f"more ({plain / max(cached, 1):.1f}x less with GradCache), for the same loss and gradients."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _worker_main(kind: str, kw: dict[str, Any]) -> None:
    import torch

    from mghkit.cli.setup import setup_model

    setup_model()
    torch.set_num_threads(int(os.environ.get("BENCH_TRAIN_THREADS", os.cpu_count() or 1)))
    fn = {"mghkit": worker_mghkit, "st": worker_st, "memory": worker_memory}[kind]
    print(json.dumps(fn(**kw)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], json.loads(sys.argv[3]))
    else:
        print(run())
