"""Synthesis at the paper's scale (docs/synthesis.md, "Batch mode"): $ per 1,000 kept triplets at
gpt-4o list prices online vs batch vs batch with prompt caching, from the token counts of our
own prompts; mghkit's CPU milliseconds per request online and in batch mode, measured side by
side against loopback servers in child processes (tests/fakeserver.py, tests/batchserver.py), so
only mghkit's own CPU is counted; and our prompt tokens per hard negative against distilabel's
E5 text-retrieval template (read from its wheel in /tmp when present, never installed).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mghkit.cli.setup import setup_synth
from mghkit.schema import KINDS, Task
from mghkit.synth.generate import generate
from mghkit.synth.triplets import estimate_completion_tokens, plan

N_PLAN = 500  # jobs whose prompts are measured
N_CPU = 300  # requests per CPU measurement
REPEATS = 3
CACHE_MIN = 1024  # OpenAI (and Anthropic Sonnet) cache only a shared prefix of at least this many tokens
GPT4O = {"in": 2.5e-6, "out": 10e-6, "cached": 1.25e-6, "batch_in": 1.25e-6, "batch_out": 5e-6}
DISTILABEL = Path("/tmp/distilabel_dl/x/distilabel/steps/tasks/templates/improving_text_embeddings")


def _tasks(n: int, tag: str) -> list[Task]:
    return [Task(kind=KINDS[i % len(KINDS)], task=f"Given a question about topic {tag}-{i}, retrieve passages that "  # type: ignore[arg-type]
                 "answer it from encyclopedia articles", query_desc="a question a curious reader asks",
                 doc_desc="a passage from an encyclopedia article") for i in range(n)]  # fmt: skip


def _tokens(text: str) -> int:
    from mghkit.llm.client import litellm_module

    return int(litellm_module().token_counter(model="gpt-4o", messages=[{"role": "user", "content": text}]))


def _prompt_figures() -> dict[str, float]:
    jobs = list(plan(_tasks(N_PLAN, "p"), seed=0))
    prompts = [j.messages[0]["content"] for j in jobs]
    by_kind: dict[str, list[str]] = {}
    for j, p in zip(jobs, prompts, strict=True):
        by_kind.setdefault(j.task.kind, []).append(p)
    prefix = {k: _tokens(os.path.commonprefix(v)) for k, v in by_kind.items()}  # noqa: RUF071 (strings, not paths)
    return {
        "prompt": statistics.mean(_tokens(p) for p in prompts),
        "completion": statistics.mean(estimate_completion_tokens(j.attributes) for j in jobs),
        "prefix": statistics.mean(prefix[j.task.kind] for j in jobs),
    }


def _costs(f: dict[str, float]) -> list[tuple[str, float]]:
    """$ per 1,000 kept triplets (every reply kept, no re-ask: the fake server's case)."""
    p, c, s = f["prompt"], f["completion"], f["prefix"]
    online = p * GPT4O["in"] + c * GPT4O["out"]
    batch = p * GPT4O["batch_in"] + c * GPT4O["batch_out"]
    cached_share = s if s >= CACHE_MIN else 0.0  # below the provider's minimum nothing is cached
    cached_price = GPT4O["cached"] / 2  # cache read at the batch discount (stacked, as Anthropic documents)
    with_cache = (p - cached_share) * GPT4O["batch_in"] + cached_share * cached_price + c * GPT4O["batch_out"]
    if_cached = (p - s) * GPT4O["batch_in"] + s * cached_price + c * GPT4O["batch_out"]
    return [("online (list price)", online * 1000), ("batch", batch * 1000),
            (f"batch + prompt caching, as is (shared prefix {s:.0f} tokens < {CACHE_MIN}: nothing cached)", with_cache * 1000),
            (f"batch + prompt caching, if the {s:.0f}-token prefix were cached", if_cached * 1000)]  # fmt: skip


class Child:
    """A loopback server in a child process (its CPU is not ours)."""

    def __init__(self, *args: str) -> None:
        repo = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=repo)  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _cpu_ms(url: str, cache: Path, out: Path, tag: str, *, batch: bool) -> float:
    tasks = [t.to_json() for t in _tasks(N_CPU, tag)]
    c0 = time.process_time()
    generate(tasks, "openai/bench", api_base=url, cache_dir=cache, out=out, concurrency=32, timeout=30,
             batch=batch, poll_interval=0.0, collect=False)  # fmt: skip
    return (time.process_time() - c0) / N_CPU * 1000


def _distilabel() -> tuple[float, str] | None:
    tpl = DISTILABEL / "text-retrieval.jinja2"
    if not tpl.is_file():
        return None
    import jinja2

    t = jinja2.Template(tpl.read_text())
    task = _tasks(1, "d")[0].task
    sizes = [_tokens(t.render(task=task, query_type="extremely long-tail", query_length="less than 5 words",
                              clarity="clear", num_words=n, language="English", difficulty="college"))
             for n in (50, 100, 200, 300, 400)]  # fmt: skip
    return statistics.mean(sizes), "distilabel 1.5.3 improving_text_embeddings/text-retrieval.jinja2"


def run() -> str:
    setup_synth()
    f = _prompt_figures()
    online_cpu: list[float] = []
    batch_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fake, bat = Child("tests.fakeserver"), Child("tests.batchserver", "--dir", str(tmp / "srv"), "--ticks", "1")
        try:
            _cpu_ms(fake.url, tmp / "cw", tmp / "w.jsonl", "warm", batch=False)  # imports, pools
            for r in range(REPEATS):
                online_cpu.append(_cpu_ms(fake.url, tmp / f"co{r}", tmp / f"o{r}.jsonl", f"o{r}", batch=False))
                batch_cpu.append(_cpu_ms(bat.url, tmp / f"cb{r}", tmp / f"b{r}.jsonl", f"b{r}", batch=True))
        finally:
            fake.close()
            bat.close()
    lines = ["## batch: $ per 1,000 kept triplets, CPU per request (bench_batch)", "",
             f"Our generate prompt (gpt-4o tokenizer, mean over {N_PLAN} planned jobs of the five kinds): "
             f"{f['prompt']:.0f} prompt tokens, of which a prefix of {f['prefix']:.0f} is shared by every request "
             f"of the same kind (the layout puts the shared instructions first); completion about "
             f"{f['completion']:.0f} tokens (our estimator from the drawn lengths, not a measurement). "
             "Costs at gpt-4o prices from LiteLLM's table ($2.50 / $10.00 per 1M in / out; batch $1.25 / $5.00; "
             "cache read $1.25), every reply kept and none re-asked:", "",
             "| mode | $ per 1,000 kept triplets |", "|---|---|"]  # fmt: skip
    lines += [f"| {name} | {cost:.2f} |" for name, cost in _costs(f)]
    lines += ["", f"mghkit's own CPU per request (this process only; servers in child processes; {N_CPU} requests, "
              f"median of {REPEATS}; noisy shared machine):", "",
              "| mode | CPU ms per request | runs |", "|---|---|---|",
              f"| online (LiteLLM acompletion, concurrency 32) | {statistics.median(online_cpu):.2f} | "
              + ", ".join(f"{x:.2f}" for x in online_cpu) + " |",
              f"| batch (one upload, polls, one download) | {statistics.median(batch_cpu):.2f} | "
              + ", ".join(f"{x:.2f}" for x in batch_cpu) + " |",
              f"| ratio online / batch | {statistics.median(online_cpu) / statistics.median(batch_cpu):.1f}x | |"]  # fmt: skip
    dl = _distilabel()
    if dl is not None:
        ours_per_neg = f["prompt"] / 4
        lines += ["", f"Prompt tokens per hard negative: ours {f['prompt']:.0f} per request for 4 graded negatives = "
                  f"{ours_per_neg:.0f}; {dl[1]} (the E5 recipe) {dl[0]:.0f} per request for 1 negative = {dl[0]:.0f} "
                  f"({dl[0] / ours_per_neg:.1f}x ours). Both give one query and one positive per request."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
