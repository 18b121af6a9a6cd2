"""Training throughput and memory: mghkit's loop vs sentence-transformers' MNRL trainer, and
GradCache at an effective batch of 512 vs a plain batch of 512.

Every configuration runs in its own subprocess (so peak RSS is its own), alternating, repeated.

1. Throughput on real, variable-length data: the same model, data and batch through
   ``mghkit.fine_tune`` (length grouping on, its default, and off) and through
   ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` (scale 50 = 1/0.02), all
   with the same LoRA (r 16 on q,k,v,o,gate,up,down), fp32, no gradient checkpointing, mean
   pooling, causal attention (ST's), (query, positive, hard negative) triplets from the bundled
   man-pages set (documents of 20-500+ tokens). Steady-state examples/s = examples / seconds
   over the steps after the first two. The first repeat also scores each trained model on the
   held-out man-pages queries (nDCG@10, ``bench.recipe_manpages.ndcg_at_10``), and the untrained
   model is scored through each arm's own encoding (its baseline). The ST arm encodes as mghkit's
   encoder does: plain text (ST 6 would otherwise render every text through SmolLM2-Instruct's
   chat template, a shared system prompt that swamps the mean), EOS appended and pooled, the
   instruction attended to but not pooled (an ST prompt, ``include_prompt=False``).
2. Memory: one optimizer step at an effective batch of 512 (query + positive + negative each),
   plain (batch 512) vs GradCache (batch 32 x grad-accum 16), on a small random Llama.

Environment knobs: BENCH_TRAIN_MODEL (default ``local``), BENCH_TRAIN_STEPS (6),
BENCH_TRAIN_BATCH (8), BENCH_TRAIN_REPEATS (2), BENCH_TRAIN_MAXLEN (256), BENCH_TRAIN_SCORE_DOCS (200; 0: no score),
BENCH_TRAIN_MEMORY (1; 0: skip part 2).
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

BATCH = int(os.environ.get("BENCH_TRAIN_BATCH", 8))
INSTRUCTION_FORMAT = "Instruct: {task}\nQuery: {query}"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- data
def write_data(folder: Path, n: int | None = None) -> Path:
    """A one-stage curriculum file of ``n`` (None: all) man-pages training examples (BM25 'high'
    negatives from the training corpus; the held-out queries' documents are never seen)."""
    from mghkit.demo import manpages_split
    from mghkit.mining import mine

    split = manpages_split(0)
    path = folder / "bench.jsonl"
    with path.open("w") as fp:
        for t in mine(split.train_pairs[:n], corpus=split.train_corpus):
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


def padding_rows(model: str = "local", max_length: int = 512, batches: tuple[int, ...] = (8, 64)) -> list[str]:
    """Padding share (tokens of ``model``'s tokenizer, truncated at ``max_length``) of real and
    E5-style lengths, without and with length grouping (no model runs: the plan alone)."""
    import random

    from transformers import AutoTokenizer

    from mghkit.demo import manpages_split, mine_public_triplets
    from mghkit.model.loading import resolve_model_path
    from mghkit.schema import Example
    from mghkit.train.data import group_by_length, padding_fraction

    tok = AutoTokenizer.from_pretrained(resolve_model_path(model))
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = min(max_length, len(tok(text, add_special_tokens=False)["input_ids"]) + 1)
        return cache[text]

    split = manpages_split(0)
    real = [Example(id=t.id, stage=1, level="high", instruction=t.instruction, query=t.query,
                    positive=t.positive_example, negative=t.hard_negative_examples[0].text)
            for t in mine_public_triplets(split)]  # fmt: skip
    rng = random.Random(0)
    vocab = [w for e in real for w in e.positive.split()][:20000]
    words = lambda lo, hi: " ".join(rng.choices(vocab, k=rng.randint(lo, hi)))  # noqa: E731
    e5 = [Example(id=f"s{i}", stage=1 + i // 512, level="high", query=words(25, 35), positive=words(50, 500),
                  negative=words(50, 500)) for i in range(2048)]  # fmt: skip
    lines = [f"Padding share of the tokens computed (tokenizer of `{model}`, max length {max_length}), one pass over "
             "the data, before (file order) and after length grouping (similar lengths per micro-batch within a "
             "stage, documents sorted into sub-batches of the batch size), and with `--packing` (the texts of a "
             "micro-batch in padding-free rows as long as the longest), without and with grouping:", "",
             "| data | batch | padding before | padding after | packing | grouping + packing |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, exs in ((f"man-pages triplets ({len(real)})", real),
                      ("E5-style synthetic (query ~40 tokens, documents 50-500 words; 4 stages of 512)", e5)):  # fmt: skip
        for b in batches:
            grouped = group_by_length(exs, b)
            before = padding_fraction(exs, range(len(exs)), b, count)
            after = padding_fraction(grouped, range(len(grouped)), b, count, sort_documents=True)
            packed = padding_fraction(exs, range(len(exs)), b, count, packing=True)
            both = padding_fraction(grouped, range(len(grouped)), b, count, packing=True)
            lines.append(f"| {name} | {b} | {before:.1%} | {after:.1%} | {packed:.1%} | {both:.1%} |")
    return [*lines, ""]


# ----------------------------------------------------------------------------- workers
class _STEncoder:
    """sentence-transformers' model behind ``encode(texts, instruction=, batch_size=)`` (the ndcg helper's)."""

    def __init__(self, st: Any) -> None:
        self.st = st

    def encode(self, texts: list[str], instruction: str | None = None, batch_size: int = 16) -> Any:
        if instruction is None:
            return self.st.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        prompt, texts = _st_prompt(instruction), [" " + t for t in texts]
        return self.st.encode(texts, prompt=prompt, batch_size=batch_size, normalize_embeddings=True)


def _st_prompt(instruction: str) -> str:
    """The query format up to its ``{query}``, less the trailing space (given to the text instead):
    sentence-transformers measures a prompt's tokens on the prompt alone, and a lone trailing space
    is its own token there but merges into the first word in the joined text, so the pooling would
    skip that word."""
    prefix = INSTRUCTION_FORMAT.split("{query}")[0].format(task=instruction)
    return prefix.removesuffix(" ")


def _st_model(model: str, maxlen: int) -> Any:
    """A SentenceTransformer over the same weights, set up as mghkit's encoder is: plain text (no
    chat template), EOS appended and pooled, mean pooling without the instruction's tokens."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from mghkit.model.loading import resolve_model_path

    # ST 6 renders text through the tokenizer's chat template when it has one (SmolLM2-Instruct
    # does): every text would then open with the same ~20-token system prompt, and mean pooling
    # over it leaves nearly one vector for all texts. Pin the plain text modality.
    tf = Transformer(resolve_model_path(model), max_seq_length=maxlen, module_output_name="token_embeddings",
                     modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}})  # fmt: skip
    tok = tf.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok("a")["input_ids"][-1:] != [tok.eos_token_id]:
        tok.add_eos_token = True  # mghkit appends EOS (kept under truncation, pooled)
    pooling = Pooling(tf.get_embedding_dimension(), "mean", include_prompt=False)
    return SentenceTransformer(modules=[tf, pooling], device="cpu")


def _score(encoder: Any, docs: int) -> float | None:
    """nDCG@10 on the held-out man-pages queries over ``docs`` documents (their relevant ones included)."""
    if docs <= 0:
        return None
    from bench.recipe_manpages import ndcg_at_10
    from mghkit.demo import eval_subset, manpages_split

    split = manpages_split(0)
    qids, doc_ids = eval_subset(split, docs, 0)
    return round(ndcg_at_10(encoder, split, qids, doc_ids), 4)


def _steady(step_s: list[float]) -> list[float]:
    return step_s[2:] or step_s


def worker_mghkit(data: str, out: str, model: str, steps: int, maxlen: int, extra: dict[str, Any],
                  score_docs: int = 0) -> dict[str, Any]:  # fmt: skip
    from mghkit.train.run import fine_tune

    given = dict(out=out, base_model=model, steps=steps, batch_size=BATCH, max_length=maxlen, save_every=10**6,
                 gradient_checkpointing=False, warmup_steps=0, pooling="mean", causal=True) | extra  # fmt: skip
    result = fine_tune(data, progress=False, **given)
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    steady = rows[2:] or rows
    return {"step_s": statistics.mean(r["step_s"] for r in steady),
            "tokens_per_step": statistics.mean(r["tokens"] for r in steady),
            "padding": statistics.mean(r["padding"] for r in steady), "peak_rss_mb": _peak_rss_mb(),
            "steps": [[round(r["step_s"], 2), r["tokens"]] for r in rows],
            "score": _score(result.encoder(), score_docs) if score_docs else None}  # fmt: skip


def worker_st(data: str, out: str, model: str, steps: int, maxlen: int, score_docs: int = 0,
              seed: int = 0) -> dict[str, Any]:  # fmt: skip
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from mghkit.train.lora import LORA_TARGETS

    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    instructions = {r["instruction"] for r in rows}
    if len(instructions) != 1:
        raise ValueError(f"the ST arm takes one instruction for all queries, the data has {len(instructions)}")
    torch.manual_seed(seed)
    st = _st_model(model, maxlen)
    tf = st[0]
    # transformers' add_adapter wants peft >= 0.22; wrap the HF model with peft directly (same LoRA).
    tf.model = get_peft_model(tf.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                   target_modules=list(LORA_TARGETS)))  # fmt: skip
    ds = datasets.Dataset.from_dict({"anchor": [" " + r["query"] for r in rows],
                                     "positive": [r["positive"] for r in rows],
                                     "negative": [r["negative"] for r in rows]})  # fmt: skip
    times: list[float] = []
    tokens: list[int] = []  # real (unpadded) tokens per step, counted as mghkit counts them
    plain_forward = tf.forward

    def counting_forward(features: dict[str, Any], *a: Any, **k: Any) -> Any:
        if torch.is_grad_enabled():
            tokens[-1] += int(features["attention_mask"].sum())
        return plain_forward(features, *a, **k)

    tf.forward = counting_forward

    class Timer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            tokens.append(0)
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter() - self.t0)

    args = SentenceTransformerTrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=2e-4, warmup_steps=0,
        save_strategy="no", report_to="none", logging_steps=10**6, dataloader_drop_last=True, seed=seed,
        use_cpu=True, disable_tqdm=True, prompts={"anchor": _st_prompt(instructions.pop())},
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(st, scale=50.0), callbacks=[Timer()])  # fmt: skip
    trainer.train()
    st.eval()
    tf.forward = plain_forward
    return {"step_s": statistics.mean(_steady(times)), "tokens_per_step": statistics.mean(_steady(tokens)),
            "steps": [[round(t, 2), n] for t, n in zip(times, tokens, strict=True)],
            "peak_rss_mb": _peak_rss_mb(), "score": _score(_STEncoder(st), score_docs) if score_docs else None}  # fmt: skip


def worker_base_score(model: str, maxlen: int, score_docs: int) -> dict[str, Any]:
    from mghkit.model.encoder import load_encoder

    return {"score": _score(load_encoder(model, max_length=maxlen, pooling="mean", causal=True), score_docs)}


def worker_st_base_score(model: str, maxlen: int, score_docs: int) -> dict[str, Any]:
    return {"score": _score(_STEncoder(_st_model(model, maxlen)), score_docs)}


def worker_side_by_side(data: str, model: str, maxlen: int, variant: str, chunks: int = 6) -> dict[str, Any]:
    """Two encoders over the same length-grouped micro-batches, forward + backward one after the other
    in ONE process, so each pair of timings is side by side. ``variant``: "dtype" (fp32 vs a bf16 base,
    LoRA fp32, no dropout) or "dropout" (peft's LoRA dropout 0.05 vs mghkit's sparse dropout, fp32)."""

    from mghkit.model.config import EncoderConfig
    from mghkit.schema import Example
    from mghkit.train.data import group_by_length
    from mghkit.train.loop import Batcher
    from mghkit.train.lora import LoraSettings, build_trainable_encoder
    from mghkit.train.loss import info_nce

    settings = {"dtype": {"float32": ("float32", LoraSettings(16, 32, 0.0)),
                          "bfloat16": ("bfloat16", LoraSettings(16, 32, 0.0))},
                "dropout": {"peft": ("float32", LoraSettings(16, 32, 0.05, sparse_dropout=False)),
                            "sparse": ("float32", LoraSettings(16, 32, 0.05, sparse_dropout=True))}}[variant]  # fmt: skip
    examples = group_by_length([Example(**json.loads(line)) for line in Path(data).read_text().splitlines()], BATCH)
    encoders = {name: build_trainable_encoder(EncoderConfig(base_model=model, pooling="mean", max_length=maxlen,
                                                            bidirectional=False, dtype=dt),
                                              lora=lora, gradient_checkpointing=False)
                for name, (dt, lora) in settings.items()}  # fmt: skip

    def step(enc: Any, chunk: list[Any]) -> tuple[float, float]:
        t0 = time.perf_counter()
        q, p, n = Batcher(enc, sort_documents=True)(chunk)
        loss = info_nce(q, p, n, temperature=0.02)
        loss.backward()
        enc.model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, float(loss.detach())

    for enc in encoders.values():
        step(enc, examples[:BATCH])  # the one-time warm-up of a fresh process
    stride = max(BATCH, (len(examples) // chunks) // BATCH * BATCH)
    rows = [{name: step(enc, examples[k * stride : k * stride + BATCH]) for name, enc in encoders.items()}
            for k in range(chunks)]  # fmt: skip
    slow, fast = settings
    speedups = [r[slow][0] / r[fast][0] for r in rows]
    mean_s = {name: statistics.mean(r[name][0] for r in rows) for name in settings}
    gaps = [abs(r[slow][1] - r[fast][1]) for r in rows]
    per = (f"(per micro-batch {', '.join(f'{x:.2f}' for x in speedups)}; {mean_s[slow]:.2f} s vs {mean_s[fast]:.2f} s "
           "a micro-batch)")  # fmt: skip
    if variant == "dropout":
        lines = [
            f"Sparse LoRA dropout (`--sparse-dropout`, the default; mghkit/train/dropout.py): forward + backward of "
            f"{chunks} length-grouped micro-batches of {BATCH}, LoRA dropout 0.05 through peft's `torch.nn.Dropout` "
            f"and through mghkit's sparse draw one after the other in one process: **sparse {statistics.median(speedups):.2f}x "
            f"faster** {per}. Same mask distribution (i.i.d. Bernoulli, tests/train/test_dropout.py), other random "
            "draws: the losses are not equal step by step, the dropout is the same in law.",
            "",
        ]  # fmt: skip
        return {"lines": lines, "speedups": speedups}
    amx = "amx_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    lines = [
        f"bf16 on CPU (`--dtype bfloat16`: the base in bf16, LoRA in fp32; this CPU {'has' if amx else 'lacks'} "
        f"AMX-BF16): forward + backward of {chunks} length-grouped micro-batches of {BATCH}, fp32 and bf16 one after "
        f"the other in one process: **bf16 {statistics.median(speedups):.2f}x faster** {per}; the loss differs by at "
        f"most {max(gaps):.4f} (fp32 {statistics.mean(r[slow][1] for r in rows):.4f} on average). Not the default "
        "on CPU (fp32, as sentence-transformers' trainer); the held-out score after bf16 training is not measured.",
        "",
    ]
    return {"lines": lines, "speedups": speedups}


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
        _env_int("BENCH_TRAIN_MAXLEN", 256),
    )
    score_docs = _env_int("BENCH_TRAIN_SCORE_DOCS", 200)
    configs = {
        "mghkit train (default: length grouping, sparse dropout)": {},
        "mghkit train --no-group-by-length": {"group_by_length": False},
        "mghkit train --packing --no-group-by-length": {"group_by_length": False, "packing": True},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = str(write_data(folder))
        n_examples = len(Path(data).read_text().splitlines())
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*configs, ST_NAME]}
        for rep in range(repeats):  # repeat k: seed k for every trainer (the held-out scores' spread is the noise)
            for k, (name, extra) in enumerate(configs.items()):
                runs[name].append(_spawn("mghkit", data=data, out=str(folder / f"m{k}-{rep}"), model=model, steps=steps,
                                         maxlen=maxlen, extra={**extra, "seed": rep},
                                         score_docs=score_docs if k == 0 else 0))  # fmt: skip
            runs[ST_NAME].append(_spawn("st", data=data, out=str(folder / f"s{rep}"), model=model, steps=steps,
                                        maxlen=maxlen, score_docs=score_docs, seed=rep))  # fmt: skip
            print(f"  repeat {rep}: " + ", ".join(f"{n.split(' (')[0]} {r[-1]['step_s']:.2f} s/step" for n, r in runs.items()),
                  file=sys.stderr, flush=True)  # fmt: skip
        base = _spawn("base", model=model, maxlen=maxlen, score_docs=score_docs)["score"] if score_docs else None
        base_st = _spawn("st_base", model=model, maxlen=maxlen, score_docs=score_docs)["score"] if score_docs else None
        memory = _memory_rows(folder, repeats) if _env_int("BENCH_TRAIN_MEMORY", 1) else []
        side = [
            line
            for variant in ("dropout", "dtype")
            if _env_int(f"BENCH_TRAIN_{variant.upper()}", 1)
            for line in _spawn("side_by_side", data=data, model=model, maxlen=maxlen, variant=variant)["lines"]
        ]

    pad_lines = padding_rows(model)
    grouped, plain, packed = (runs[name] for name in configs)
    ratios = [t["step_s"] / o["step_s"] for o, t in zip(grouped, runs[ST_NAME], strict=True)]
    ratios_plain = [t["step_s"] / o["step_s"] for o, t in zip(plain, runs[ST_NAME], strict=True)]
    ratios_packed = [t["step_s"] / o["step_s"] for o, t in zip(packed, runs[ST_NAME], strict=True)]
    ratios_group = [p["step_s"] / o["step_s"] for o, p in zip(grouped, plain, strict=True)]
    ratios_pack = [p["step_s"] / o["step_s"] for o, p in zip(packed, plain, strict=True)]
    tok_s = {name: [r["tokens_per_step"] / r["step_s"] for r in rows] for name, rows in runs.items()}
    tok_ratios = {name: [m / t for m, t in zip(tok_s[name], tok_s[ST_NAME], strict=True)] for name in configs}
    lines = [
        "## train",
        "",
        f"Model `{model}` (fp32, LoRA r 16 on all 7 projections, no gradient checkpointing, causal attention, "
        f"mean pooling), batch {BATCH} (query + positive + hard negative), max length {maxlen}, the bundled man-pages "
        f"training triplets ({n_examples}, real variable lengths), {steps} steps per run (mean over steps 3+), "
        f"{repeats} repeats alternating the four trainers, each run in its own process; "
        f"{os.environ.get('BENCH_TRAIN_THREADS', os.cpu_count())} torch thread(s) per run on a {os.cpu_count()}-CPU "
        f"machine shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end): figures are noisy, "
        "the ratios (each repeat's runs back to back) are the measurement.",
        "",
        "| trainer | s/step | examples/s | real tokens/s | padding (share of tokens) | peak RSS MB | held-out nDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in runs.items():
        s_step = statistics.median(r["step_s"] for r in rows)
        pad = f"{statistics.mean(r['padding'] for r in rows):.1%}" if "padding" in rows[0] else "n/a"
        scores = [r["score"] for r in rows if r.get("score") is not None]
        lines.append(f"| {name} | {s_step:.2f} | {BATCH / s_step:.2f} | {statistics.median(tok_s[name]):,.0f} | {pad} | "
                     f"{max(r['peak_rss_mb'] for r in rows):,.0f} | {_mean_sd(scores)} |")  # fmt: skip
    if base is not None and base_st is not None:
        lines.append(f"| (the untrained model, mghkit's encoder) | | | | | | {base:.4f} |")
        lines.append(f"| (the untrained model, through sentence-transformers) | | | | | | {base_st:.4f} |")
    lines += [
        "",
        f"Examples/s ratio mghkit / sentence-transformers (it depends on the batches each run drew, see below): "
        f"{statistics.median(ratios):.2f}x (per repeat: {', '.join(f'{r:.2f}' for r in ratios)}); without length grouping "
        f"{statistics.median(ratios_plain):.2f}x ({', '.join(f'{r:.2f}' for r in ratios_plain)}); with packing "
        f"and file-order batches {statistics.median(ratios_packed):.2f}x "
        f"({', '.join(f'{r:.2f}' for r in ratios_packed)}). Over file order with padding: grouping alone "
        f"{statistics.median(ratios_group):.2f}x, packing alone {statistics.median(ratios_pack):.2f}x. "
        + (
            f"Held-out nDCG@10: mean +- standard deviation over the {repeats} repeats (seeds 0-{repeats - 1}; {steps} "
            f"steps: a check that both trainers learn alike, not a converged score; {score_docs} documents ranked); "
            f"mghkit minus sentence-transformers per seed: {_diffs(runs, configs)}."
            if score_docs
            else "Held-out score not measured (BENCH_TRAIN_SCORE_DOCS=0)."
        ),
        "",
        "Real tokens/s (unpadded tokens processed per second, queries' instructions included) does not depend on "
        "which batches a run happened to draw - a length-grouped run's few timed steps may all be long or all short "
        "batches - so over a whole epoch (the same examples for every trainer) it is the examples/s ratio. "
        "**Real tokens/s ratio mghkit / sentence-transformers** (the measure for the >= 1.5x target): "
        + "; ".join(
            f"{name.removeprefix('mghkit train').strip() or 'default'} "
            f"{statistics.median(r):.2f}x ({', '.join(f'{x:.2f}' for x in r)})"
            for name, r in tok_ratios.items()
        )
        + ".",
        "",
    ]
    lines += pad_lines
    lines += side
    if memory:
        lines += memory
    return "\n".join(lines) + "\n"


ST_NAME = "sentence-transformers MNRL trainer"


def _mean_sd(scores: list[float]) -> str:
    if not scores:
        return ""
    if len(scores) == 1:
        return f"{scores[0]:.4f}"
    return f"{statistics.mean(scores):.4f} +- {statistics.stdev(scores):.4f}"


def _diffs(runs: dict[str, list[dict[str, Any]]], configs: dict[str, Any]) -> str:
    pairs = zip(runs[next(iter(configs))], runs[ST_NAME], strict=True)
    return ", ".join(f"{m['score'] - s['score']:+.4f}" for m, s in pairs if m.get("score") is not None)


def _memory_rows(folder: Path, repeats: int) -> list[str]:
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
    lines = [
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
    return lines


def _worker_main(kind: str, kw: dict[str, Any]) -> None:
    import torch

    from mghkit.cli.setup import setup_model

    setup_model()
    torch.set_num_threads(int(os.environ.get("BENCH_TRAIN_THREADS", os.cpu_count() or 1)))
    fn = {"mghkit": worker_mghkit, "st": worker_st, "memory": worker_memory, "base": worker_base_score,
          "st_base": worker_st_base_score, "side_by_side": worker_side_by_side}[kind]  # fmt: skip
    print(json.dumps(fn(**kw)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], json.loads(sys.argv[3]))
    else:
        print(run())
