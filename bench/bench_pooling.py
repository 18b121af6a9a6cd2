"""Encoding throughput per pooling mode on SmolLM2-135M (``local``), 512 tokens, batch 8.

Every mode runs the full forward pass on the same batch, interleaved within each repeat, so the
ratios compare runs made seconds apart on the same (shared, noisy) machine. The ATA overhead is
the median over repeats of (ATA time / mean time) measured in the same repeat. For comparison:
ATA read from ``output_attentions`` with eager attention in every layer (what the hook avoids),
and mean pooling with the model in bfloat16.

``MGHKIT_BENCH_REPEATS`` (default 3) and ``MGHKIT_BENCH_TOKENS`` (default 512) change the size.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from mghkit.model.encoder import Encoder, load_encoder
from mghkit.model.pooling import pool, pooling_weights

BATCH = 8


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _eager_ata(enc: Encoder, batch: dict[str, torch.Tensor]) -> None:
    """ATA the slow way: eager attention in every layer, attentions returned by the model."""
    out = enc.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        output_attentions=True,
        is_causal=False,
    )
    w = pooling_weights("ata", batch["pool_mask"], out.attentions[-1].float(), None)
    pool(out.last_hidden_state, w)


def _hook_cost(enc: Encoder, batch: dict[str, torch.Tensor], repeats: int = 3) -> list[float]:
    """Seconds for the hook's recomputation alone, on the inputs the last attention module receives."""
    from mghkit.model.attention import LastLayerAttention, attention_probs

    hook = LastLayerAttention.for_model(enc.model)
    seen: dict = {}
    grab = hook.module.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    try:
        enc.forward(batch, attention=False)
    finally:
        grab.remove()
    cos, sin = seen["position_embeddings"]
    args = (
        hook.module,
        seen["hidden_states"],
        cos,
        sin,
        seen.get("attention_mask"),
        False,
        hook._rope,
        hook._repeat_kv,
    )
    return [_timed(lambda: attention_probs(*args)) for _ in range(repeats)]


def run() -> str:
    repeats = int(os.environ.get("MGHKIT_BENCH_REPEATS", "3"))
    tokens = int(os.environ.get("MGHKIT_BENCH_TOKENS", "512"))
    enc = load_encoder("local", pooling="mean", max_length=tokens)
    text = "The Latin name of sodium is natrium, hence the symbol Na. " * (tokens // 8)
    batch = enc.tokenize([text] * BATCH)
    assert batch["input_ids"].shape == (BATCH, tokens)
    ata = enc.with_config(pooling="ata")
    eager = load_encoder("local", pooling="mean", max_length=tokens)
    eager.model.set_attn_implementation("eager")
    bf16 = load_encoder("local", pooling="mean", max_length=tokens, dtype="bfloat16")
    forwards = {
        "mean (sdpa, no hook)": lambda: enc.embed(batch),
        "ata (sdpa + last-layer hook)": lambda: ata.embed(batch),
        "ata, eager attention everywhere": lambda: _eager_ata(eager, batch),
        "mean, bfloat16 weights": lambda: bf16.embed(batch),
    }
    times: dict[str, list[float]] = {}
    with torch.no_grad():
        out = ata.forward(batch)  # warm-up, and the tensors the pooling step works on
        for _ in range(repeats):
            for name, fn in forwards.items():
                times.setdefault(name, []).append(_timed(fn))
        step = {}
        for kind in ("mean", "last", "weighted-mean", "ata"):
            reps = [_timed(lambda k=kind: pool(out["hidden"], ata.weights(out, k))) for _ in range(5)]
            step[kind] = statistics.median(reps)
        step["ata hook alone (q, k, RoPE, softmax of the last layer)"] = statistics.median(_hook_cost(ata, batch))
    base = times["mean (sdpa, no hook)"]
    lines = [
        "## Pooling throughput (bench_pooling)",
        "",
        f"SmolLM2-135M-Instruct (`local`), bidirectional, batch {BATCH} x {tokens} tokens, fp32 unless noted, "
        f"{repeats} interleaved repeats, torch threads {torch.get_num_threads()}. Ratio = median over repeats "
        "of (time / mean-pooling time in the same repeat). Mean, last and weighted-mean share the same "
        "forward pass; they differ only in the pooling step, timed separately below.",
        "",
        "| forward pass | median s/batch | texts/s | ratio vs mean |",
        "|---|---:|---:|---:|",
    ]
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base, strict=True))
        med = statistics.median(ts)
        lines.append(f"| {name} | {med:.2f} | {BATCH / med:.2f} | {ratio:.3f} |")
    fwd = statistics.median(base)
    lines += ["", "| pooling step (after the forward) | ms/batch | share of the mean forward |", "|---|---:|---:|"]
    lines += [f"| {k} | {1000 * v:.1f} | {100 * v / fwd:.2f}% |" for k, v in step.items()]
    hook = statistics.median(t / b for t, b in zip(times["ata (sdpa + last-layer hook)"], base, strict=True))
    eag = statistics.median(t / b for t, b in zip(times["ata, eager attention everywhere"], base, strict=True))
    lines += [
        "",
        f"ATA overhead over mean pooling (hook + ATA step): {100 * (hook - 1):+.1f}% (target <= 5%); "
        f"ATA with eager attention everywhere: {100 * (eag - 1):+.1f}%.",
        "",
        "The machine is shared (other jobs ran alongside), so the absolute medians are noisy; the paired ratio is "
        "the figure to read. bfloat16 weights: compare their ratio; their effect on scores is not measured here.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
