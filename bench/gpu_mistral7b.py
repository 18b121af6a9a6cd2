"""Mistral-7B training throughput and memory on one GPU (issue 5, item 9) - run on the device.

The model is Mistral-7B built from its config with random bf16 weights (no download), made
bidirectional as ``mghkit.model.loading`` does, then made trainable by mghkit's own
``make_trainable`` (LoRA r16 on all projections, non-reentrant gradient checkpointing). Each
step runs mghkit's training path: ``Encoder.embed`` (pooling) -> ``info_nce`` -> GradCache or
plain accumulation -> AdamW on the LoRA weights. Batches are random token ids of a fixed length
(no padding), so the figures are for full 512-token texts: an upper bound on the time per step.

    python3 bench/gpu_mistral7b.py --out results.jsonl          # on the GPU machine
    python3 bench/gpu_mistral7b.py --tiny --out /tmp/t.jsonl    # the same code, CPU, in seconds
    python3 bench/gpu_mistral7b.py --speed --out speed.jsonl     # variable lengths: padding, grouping,
                                                                 # --packing, --compile, --liger (issue 17; untested on GPU)

``--speed`` draws E5-like lengths per example (query 30-50 tokens, documents 65-512 tokens, i.e.
50-500 words), padded per micro-batch as training pads them: in file order ("varlen"), or
length-grouped as ``--group-by-length`` does (a pool of 16 micro-batches sorted by length and cut,
documents sorted into sub-batches: ``mghkit.train.loop.Batcher``), plain, packed into
padding-free rows (``--packing``), or with the model compiled (``--compile``) or Liger's kernels
(``--liger``). Tokens/s counts real tokens only.

One JSON line per configuration: tokens/s, examples/s, peak GPU memory, model FLOP utilisation
(MFU) and the projected time of the paper's ~1,600 steps at effective batch 512.

FLOP accounting (per token, N = linear weights of the decoder layers, A = attention matmuls of
one forward pass, 4 * S * hidden per layer): the forward pass is 2N + A; LoRA training needs
gradients for the activations, not the frozen weights, so the backward pass is about 2N + 2A.
Model FLOPs = 4N + 3A. Checkpointing recomputes a forward (2N + A) and GradCache adds its
gradient-free first pass (2N + A): those count in the hardware FLOPs (HFU), not in MFU.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

PAPER_STEPS = 1600  # ~1,600 steps at effective batch 512 (docs/method.md section 4)
PAPER_BATCH = 512
PEAK_BF16 = {"cuda": 989.4e12}  # dense bf16 of an H100/H200 SXM (datasheet)


@dataclass
class Setting:
    name: str
    pooling: str = "mean"
    grad_cache: bool = True
    checkpointing: bool = True
    micro: int = 64  # examples per micro-batch: query + positive + hard negative each
    accum: int = 2  # micro-batches per timed step (the rate per token does not depend on it)
    lora_dropout: float = 0.05
    query_len: int | None = None  # tokens per query / per document; None: --seq
    doc_len: int | None = None
    adapter_bf16: bool = False  # LoraSettings.dtype: False = float32 (peft's default), True = base (bf16)
    varlen: bool = False  # E5-like lengths per example, padded per micro-batch (--speed)
    grouped: bool = False  # length grouping as --group-by-length does
    packed: bool = False  # padding-free rows as --packing does (mghkit/model/packing.py)
    compile: bool = False  # mghkit.train.speed.compile_model
    liger: bool = False  # mghkit.train.speed.apply_liger


def mistral_7b_config(tiny: bool) -> object:
    from transformers import MistralConfig

    if tiny:
        return MistralConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    # Mistral-7B-v0.1: hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocab 32000.
    return MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768)  # fmt: skip


def flops_per_token(config: object, lengths: tuple[int, ...]) -> dict[str, float]:
    """FLOPs per token, averaged over one example's texts of the given lengths."""
    h, m, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers  # type: ignore[attr-defined]
    kv = h * config.num_key_value_heads // config.num_attention_heads  # type: ignore[attr-defined]
    n = layers * (2 * h * h + 2 * h * kv + 3 * h * m)
    a = sum(layers * 4 * length * h * length for length in lengths) / sum(lengths)
    forward = 2 * n + a
    return {"params_linear": n, "forward": forward, "model": 4 * n + 3 * a}


def build(config: object, device: torch.device, setting: Setting, seq: int) -> object:
    from transformers import AutoModel

    from mghkit.model.config import EncoderConfig
    from mghkit.model.loading import set_attention
    from mghkit.model.tiny import tiny_tokenizer
    from mghkit.train.lora import LoraSettings, make_trainable

    set_attention(config, bidirectional=True)
    config.use_cache = False  # type: ignore[attr-defined]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with device:
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa")
    enc_config = EncoderConfig(base_model="mistral-7b-random", pooling=setting.pooling, max_length=seq,
                               dtype=str(dtype).removeprefix("torch."))  # fmt: skip
    lora = LoraSettings(dropout=setting.lora_dropout, dtype="base" if setting.adapter_bf16 else "float32")
    encoder = make_trainable(model, tiny_tokenizer(), enc_config, lora=lora,
                             gradient_checkpointing=setting.checkpointing)  # fmt: skip
    if setting.compile or setting.liger:
        from mghkit.train.speed import apply_speedups

        apply_speedups(encoder.model, compile=setting.compile, liger=setting.liger, device_type=device.type)
    return encoder


def varlen_lengths(n: int, seq: int, rng: object, tiny: bool) -> list[tuple[int, int, int]]:
    """(query, positive, negative) token lengths of ``n`` E5-like examples, at most ``seq``."""
    q_lo, q_hi, d_lo, d_hi = (4, 8, 6, 30) if tiny else (30, 50, 65, 650)
    return [(min(seq, rng.randint(q_lo, q_hi)), min(seq, rng.randint(d_lo, d_hi)), min(seq, rng.randint(d_lo, d_hi)))  # type: ignore[attr-defined]
            for _ in range(n)]  # fmt: skip


def varlen_chunk(lengths: list[tuple[int, int, int]], vocab: int, gen: torch.Generator) -> tuple[list, list]:
    """Query and document features of random ids with the given lengths (the Batcher's inputs)."""

    def feat(k: int) -> tuple[list[int], list[int]]:
        return torch.randint(4, vocab, (k,), generator=gen).tolist(), [1] * k

    queries = [feat(q) for q, _, _ in lengths]
    docs = [feat(p) for _, p, _ in lengths] + [feat(n) for _, _, n in lengths]
    return queries, docs


def random_batch(n: int, seq: int, vocab: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(4, vocab, (n, seq), generator=generator)
    ones = torch.ones(n, seq, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": ones, "pool_mask": ones,
            "position_ids": torch.arange(seq).expand(n, seq).contiguous()}  # fmt: skip


def run_setting(encoder: object, setting: Setting, seq: int, steps: int, device: torch.device,
                profile: bool = False) -> dict[str, float]:  # fmt: skip
    from mghkit.train.gradcache import accumulate_backward, grad_cache_backward
    from mghkit.train.lora import trainable_parameters
    from mghkit.train.loss import info_nce

    model = encoder.model  # type: ignore[attr-defined]
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    q_len, d_len = setting.query_len or seq, setting.doc_len or seq
    gen = torch.Generator().manual_seed(0)
    import random

    from mghkit.train.loop import Batcher

    rng = random.Random(0)
    batcher = Batcher(encoder, sort_documents=setting.grouped)  # type: ignore[arg-type]
    real_tokens = [0]

    def varlen_forward(chunk: dict[str, list]) -> tuple[torch.Tensor, ...]:
        m = len(chunk["q"])
        batcher.last_tokens = batcher.last_padded = 0
        if setting.packed:
            q, p, n = batcher._embed_packed(chunk["q"] + chunk["d"]).split(m)
            if torch.is_grad_enabled() or not setting.grad_cache:
                real_tokens[0] += batcher.last_tokens
            return q, p, n
        q = batcher._embed(chunk["q"], m, False)
        d = batcher._embed(chunk["d"], m if setting.grouped else 2 * m, setting.grouped)
        if torch.is_grad_enabled() or not setting.grad_cache:
            real_tokens[0] += batcher.last_tokens
        return (q, *d.split(m))

    def varlen_chunks(accum: int) -> list[dict[str, list]]:
        tiny = vocab < 1000
        if not setting.grouped:
            lengths = [varlen_lengths(setting.micro, seq, rng, tiny) for _ in range(accum)]
        else:  # a pool sorted by length, cut into micro-batches, a random pick of them
            pool = sorted(varlen_lengths(16 * setting.micro, seq, rng, tiny), key=sum)
            cuts = [pool[k : k + setting.micro] for k in range(0, len(pool), setting.micro)]
            lengths = [cuts[rng.randrange(len(cuts))] for _ in range(accum)]
        out = []
        for ls in lengths:
            q, d = varlen_chunk(ls, vocab, gen)
            out.append({"q": q, "d": d})
        return out

    def forward(chunk: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        q = encoder.embed(chunk["q"])  # type: ignore[attr-defined]
        d = encoder.embed(chunk["d"])  # type: ignore[attr-defined]
        return (q, *d.split(d.shape[0] // 2))

    def step(accum: int) -> float:
        if setting.varlen:
            chunks: list = varlen_chunks(accum)
        else:
            chunks = [{"q": random_batch(setting.micro, q_len, vocab, gen), "d": random_batch(2 * setting.micro, d_len, vocab, gen)}
                      for _ in range(accum)]  # fmt: skip
        backward = grad_cache_backward if setting.grad_cache else accumulate_backward
        loss = backward(varlen_forward if setting.varlen else forward, chunks, lambda q, p, n: info_nce(q, p, n))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step(1)  # warm-up: kernels chosen, memory pools filled
    sync()
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(1)
            sync()
        print(
            prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60),
            flush=True,
        )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    real_tokens[0] = 0
    padded = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step(setting.accum)
        sync()
        times.append(time.perf_counter() - t0)
    if setting.varlen:  # variable lengths: the mean step, real tokens only
        tokens, best = real_tokens[0] // steps, sum(times) / steps
        padded = batcher.last_padded
    else:
        tokens, best = setting.accum * setting.micro * (q_len + 2 * d_len), min(times)
    out = {"step_s": [round(t, 3) for t in times], "tokens_per_step": tokens, "tokens_per_s": round(tokens / best),
           "examples_per_s": round(setting.accum * setting.micro / best, 2), "loss": round(loss, 4)}  # fmt: skip
    if padded:
        out["last_micro_batch_padding"] = round(1 - batcher.last_tokens / padded, 3)
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer Mistral on CPU (checks the script)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per setting")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per setting (after one warm-up)")
    parser.add_argument("--only", default="", help="comma-separated setting names")
    parser.add_argument("--variants", action="store_true", help="LoRA dropout / adapter dtype variants, micro 32")
    parser.add_argument("--preset", action="store_true", help="the paper preset's step at 512 and E5-like lengths")
    parser.add_argument("--speed", action="store_true", help="variable lengths: grouping, --compile, --liger")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of the first setting")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    seq = 32 if args.tiny else args.seq
    settings = [
        Setting("gradcache+ckpt mean (default)"),
        Setting("gradcache+ckpt ata", pooling="ata"),
        Setting("accumulate+ckpt mean", grad_cache=False),
        Setting("gradcache no-ckpt mean micro8", checkpointing=False, micro=8, accum=16),
    ]
    if args.variants:
        settings = [
            Setting("v baseline", micro=32, accum=1),
            Setting("v dropout0", micro=32, accum=1, lora_dropout=0.0),
            Setting("v adapter-bf16", micro=32, accum=1, adapter_bf16=True),
            Setting("v dropout0+adapter-bf16", micro=32, accum=1, lora_dropout=0.0, adapter_bf16=True),
        ]
    if args.preset:  # the paper preset's step (plain accumulation, micro-batch 64), 512 and E5-like lengths
        preset = Setting("preset", grad_cache=False, micro=64, accum=1)
        settings = [
            replace(preset, name="preset lora-dtype base, 512/512", adapter_bf16=True),
            replace(preset, name="preset lora-dtype base, q40/d250", adapter_bf16=True, query_len=40, doc_len=250),
            replace(preset, name="preset lora-dtype float32, q40/d250", query_len=40, doc_len=250),
        ]
    if args.speed:  # issue 17: the paper preset's step at E5-like variable lengths
        preset = Setting("speed", grad_cache=False, micro=64, accum=1, adapter_bf16=True, varlen=True,
                         query_len=40, doc_len=340)  # fmt: skip  # the mean lengths, for the FLOP count
        settings = [
            replace(preset, name="speed varlen file order"),
            replace(preset, name="speed varlen grouped", grouped=True),
            replace(preset, name="speed varlen grouped packed", grouped=True, packed=True),
            replace(preset, name="speed varlen grouped compile", grouped=True, compile=True),
            replace(preset, name="speed varlen grouped liger", grouped=True, liger=True),
        ]
    if args.tiny:
        settings = [
            replace(s, micro=2, accum=2, query_len=s.query_len and 8, doc_len=s.doc_len and 24) for s in settings
        ]
    if args.only:
        wanted = set(args.only.split(","))
        settings = [s for s in settings if s.name in wanted]
    import transformers

    head = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "transformers": transformers.__version__, "seq": seq}  # fmt: skip
    print(json.dumps(head), flush=True)
    with args.out.open("a") as fp:
        fp.write(json.dumps(head) + "\n")
    for setting in settings:
        config = mistral_7b_config(args.tiny)
        lengths = (setting.query_len or seq, setting.doc_len or seq, setting.doc_len or seq)
        flops = flops_per_token(config, lengths)
        row: dict[str, object] = {"setting": setting.name, **setting.__dict__}
        t0 = time.perf_counter()
        try:
            encoder = build(config, device, setting, seq)
            row["build_s"] = round(time.perf_counter() - t0, 1)
            row.update(run_setting(encoder, setting, seq, args.steps, device, args.profile and setting is settings[0]))
        except Exception as e:  # one setting failing (e.g. out of memory) must not end the run
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            encoder = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if "tokens_per_s" in row:
            tps = float(row["tokens_per_s"])  # type: ignore[arg-type]
            hardware = flops["model"] + flops["forward"] * (int(setting.checkpointing) + int(setting.grad_cache))
            peak = PEAK_BF16.get(device.type)
            if peak:
                row["mfu"] = round(tps * flops["model"] / peak, 3)
                row["hfu"] = round(tps * hardware / peak, 3)
            per_step = PAPER_BATCH * sum(lengths)
            row["paper_hours"] = round(PAPER_STEPS * per_step / tps / 3600, 2)
            row["tokens_per_example_for_12h"] = round(12 * 3600 * tps / (PAPER_STEPS * PAPER_BATCH))
        print(json.dumps(row), flush=True)
        with args.out.open("a") as fp:
            fp.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
