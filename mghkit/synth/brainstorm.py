"""Stage 1 of MGH synthesis: an LLM brainstorms text-matching tasks of the five kinds.

Each call asks for ``per_call`` tasks of one kind, leaning toward a domain drawn from (seed, call
id) for diversity; near-duplicate tasks (same content words, whatever the order or phrasing
details) are removed; calls continue until each kind has its share or a bounded number of calls
is spent. The order of the output is deterministic for a seed (calls are read in call order).

    >>> quotas(7, ["short-long", "sts", "long-long"])
    {'short-long': 3, 'sts': 2, 'long-long': 2}
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mghkit.errors import MghkitError, UsageError
from mghkit.jsonl import JsonlWriter
from mghkit.llm import LOCAL, ClientConfig, Completion, LLMClient, open_client
from mghkit.prompts import load_template
from mghkit.schema import KINDS, Task
from mghkit.synth.attributes import draw, request_seed
from mghkit.synth.extract import extract_json

TEMPERATURE = 1.0
LOCAL_TEMPERATURE = 0.6
MAX_TOKENS = 4096
LOCAL_MAX_TOKENS = 1024
MAX_PER_CALL = 50
DUP_THRESHOLD = 0.7  # Jaccard similarity of content words at or above which two tasks are one
_STOP_WORDS = (
    "a an the of to for and or in on at by with from as is are be that this these those its it their "
    "given retrieve find search get return provided provide documents document query queries "
    "relevant which what when where who how"
)
_STOP = frozenset(_STOP_WORDS.split())


def parse_kinds(text: str | Sequence[str]) -> list[str]:
    """``"short-long,sts"`` -> ``["short-long", "sts"]``; an unknown kind is a UsageError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = [k.strip() for k in items if k.strip()]
    if not kinds:
        raise UsageError(f"--kinds: give at least one of {', '.join(KINDS)}")
    for k in kinds:
        if k not in KINDS:
            raise UsageError(f"--kinds: unknown kind {k!r}; choose from {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


def quotas(n_tasks: int, kinds: Sequence[str]) -> dict[str, int]:
    """Split ``n_tasks`` evenly over the kinds, the first kinds taking the remainder."""
    base, extra = divmod(n_tasks, len(kinds))
    return {k: base + (i < extra) for i, k in enumerate(kinds)}


def content_words(text: str) -> frozenset[str]:
    """The words that carry a task's meaning (lower case, no stop words, crude plural folding).

    >>> sorted(content_words("Retrieve recipes given a list of the ingredients."))
    ['ingredient', 'list', 'recipe']
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                     for w in words if w not in _STOP)  # fmt: skip


class NearDupIndex:
    """Remembers accepted texts; ``add`` says whether a text is new (and keeps it) or a near
    duplicate of one already kept (Jaccard of content words >= threshold).

    >>> idx = NearDupIndex()
    >>> idx.add("Retrieve recipes given a list of ingredients"), idx.add("Find recipes, given the list of ingredients.")
    (True, False)
    """

    def __init__(self, threshold: float = DUP_THRESHOLD) -> None:
        self.threshold = threshold
        self._sets: list[frozenset[str]] = []
        self._by_word: dict[str, list[int]] = {}

    def add(self, text: str) -> bool:
        words = content_words(text)
        if not words:
            return False
        candidates = {i for w in words for i in self._by_word.get(w, ())}
        for i in candidates:
            other = self._sets[i]
            if len(words & other) / len(words | other) >= self.threshold:
                return False
        for w in words:
            self._by_word.setdefault(w, []).append(len(self._sets))
        self._sets.append(words)
        return True


def tasks_schema(n: int) -> dict[str, Any]:
    """The bounded JSON schema the embedded model is constrained to."""
    item = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "minLength": 20, "maxLength": 160},
            "query_desc": {"type": "string", "minLength": 3, "maxLength": 80},
            "doc_desc": {"type": "string", "minLength": 3, "maxLength": 80},
        },
        "required": ["task", "query_desc", "doc_desc"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": item, "minItems": n, "maxItems": n}},
        "required": ["tasks"],
        "additionalProperties": False,
    }


def parse_tasks(text: str) -> tuple[list[dict[str, str]], int, str | None]:
    """(usable task items, number of unusable items, why the whole reply is unusable or None).

    >>> parse_tasks('{"tasks": [{"task": "Find X given Y"}, {"task": ""}, "Match A to B"]}')
    ([{'task': 'Find X given Y', 'query_desc': '', 'doc_desc': ''}, {'task': 'Match A to B', 'query_desc': '', 'doc_desc': ''}], 1, None)
    """
    obj, why = extract_json(text)
    if why is not None:
        return [], 0, why
    items = obj.get("tasks") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        return [], 0, "expected an object with a list under 'tasks'"
    good: list[dict[str, str]] = []
    bad = 0
    for item in items:
        if isinstance(item, str):
            item = {"task": item}
        if not isinstance(item, dict) or not isinstance(item.get("task"), str) or not item["task"].strip():
            bad += 1
            continue
        good.append({k: str(item.get(k) or "").strip() for k in ("task", "query_desc", "doc_desc")})
    return good, bad, None


@dataclass
class BrainstormStats:
    calls: int = 0
    unusable_replies: int = 0
    bad_items: int = 0
    duplicates: int = 0
    made: dict[str, int] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)
    first_problem: str = ""

    @property
    def shortfall(self) -> int:
        return sum(self.wanted.values()) - sum(self.made.values())


async def abrainstorm(
    client: LLMClient,
    *,
    n_tasks: int,
    kinds: Sequence[str] = KINDS,
    per_call: int = 5,
    seed: int = 0,
    concurrency: int = 4,
    on_task: Callable[[Task], None],
    max_calls_factor: int = 3,
) -> BrainstormStats:
    """Brainstorm ``n_tasks`` tasks over ``kinds``; each new task is handed to ``on_task`` in a
    deterministic order. Transport errors propagate after the tasks already made are handed over."""
    templates = {k: load_template(f"brainstorm-{k}.txt") for k in kinds}
    domains_t = load_template("brainstorm-domains.txt")
    domains = [d.strip() for d in domains_t.text.splitlines() if d.strip()]
    sha = {k: hashlib.sha256(f"{t.sha}+{domains_t.sha}".encode()).hexdigest()[:16] for k, t in templates.items()}
    local = client.model == LOCAL
    fmt = ({"type": "json_schema", "json_schema": {"name": "tasks", "schema": tasks_schema(per_call)}} if local
           else {"type": "json_object"})  # fmt: skip
    kw: dict[str, Any] = {"response_format": fmt, "temperature": LOCAL_TEMPERATURE if local else TEMPERATURE,
                          "max_tokens": LOCAL_MAX_TOKENS if local else MAX_TOKENS}  # fmt: skip
    need = quotas(n_tasks, kinds)
    stats = BrainstormStats(made=dict.fromkeys(kinds, 0), wanted=dict(need))
    max_calls = {k: max_calls_factor * math.ceil(q / per_call) + 2 for k, q in need.items()}
    calls = dict.fromkeys(kinds, 0)
    seen = NearDupIndex()
    sem = asyncio.Semaphore(max(1, concurrency))

    async def call(kind: str, i: int) -> Completion:
        call_id = f"{kind}:{i}"
        domain = draw(seed, call_id, "domain", domains)
        messages = [{"role": "user", "content": templates[kind].render(n=per_call, domain=domain)}]
        async with sem:
            return await client.complete(messages, seed=request_seed(seed, call_id), **kw)

    while True:
        batch = []
        for k in kinds:
            if need[k] > 0 and calls[k] < max_calls[k]:
                for _ in range(min(math.ceil(need[k] / per_call), max_calls[k] - calls[k])):
                    batch.append((k, calls[k]))
                    calls[k] += 1
        if not batch:
            break
        results = await asyncio.gather(*(call(k, i) for k, i in batch), return_exceptions=True)
        error: BaseException | None = None
        for (kind, i), res in zip(batch, results, strict=True):
            if isinstance(res, BaseException):
                error = error or res
                continue
            stats.calls += 1
            items, bad, why = parse_tasks(res.text)
            stats.bad_items += bad
            if why is not None:
                stats.unusable_replies += 1
                stats.first_problem = stats.first_problem or why
                continue
            share = max(1, len(items))
            usage = {k: v // share for k, v in res.usage.items()}
            for item in items:
                if need[kind] <= 0:
                    break
                if not seen.add(item["task"]):
                    stats.duplicates += 1
                    continue
                meta = {"model": client.model, "prompt_sha": sha[kind], "seed": seed, "call": i,
                        "usage": usage, "cost_usd": round(res.cost_usd / share, 8)}  # fmt: skip
                on_task(Task(kind=kind, meta=meta, **item))  # type: ignore[arg-type]
                need[kind] -= 1
                stats.made[kind] += 1
        if error is not None:
            raise error
    return stats


def brainstorm(client: LLMClient, **kwargs: Any) -> list[Task]:
    """Notebook entry point: the brainstormed tasks as a list (see :func:`abrainstorm`)."""
    tasks: list[Task] = []
    asyncio.run(abrainstorm(client, on_task=tasks.append, **kwargs))
    return tasks


@dataclass
class BrainstormOptions:
    n_tasks: int = 40
    kinds: str = ",".join(KINDS)
    per_call: int = 5
    seed: int = 0
    out: str = "-"
    concurrency: int = 4
    dry_run: bool = False
    progress: bool = True


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_brainstorm(config: ClientConfig, opts: BrainstormOptions) -> BrainstormStats:
    """What ``mghkit brainstorm`` does: check options (exit 2), call, write Task records, report."""
    from mghkit.synth.report import RunProgress, usage_line

    kinds = parse_kinds(opts.kinds)
    if opts.n_tasks < 1:
        raise UsageError("--n-tasks must be at least 1")
    if not 1 <= opts.per_call <= MAX_PER_CALL:
        raise UsageError(f"--per-call must be between 1 and {MAX_PER_CALL}")
    if opts.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    client = open_client(config, need_key=not opts.dry_run)
    if opts.dry_run:
        _dry_run(client, kinds, opts)
        return BrainstormStats()
    if config.max_budget is not None and not client.price_known:
        _say(f"brainstorm: warning: no price for {client.model} in LiteLLM's table, so --max-budget cannot be enforced")
    stats = BrainstormStats()
    error: MghkitError | None = None
    try:
        with (
            JsonlWriter(opts.out) as out,
            RunProgress(opts.n_tasks, "brainstorm", client, enabled=opts.progress) as bar,
        ):

            def on_task(task: Task) -> None:
                out.write(task)
                bar.advance()

            try:
                stats = asyncio.run(abrainstorm(client, n_tasks=opts.n_tasks, kinds=kinds, per_call=opts.per_call,
                                                seed=opts.seed, concurrency=opts.concurrency, on_task=on_task))  # fmt: skip
            except MghkitError as e:  # keep what was made (a budget or network stop), then report
                error = e
    finally:
        client.close()
    if error is None:
        made = ", ".join(f"{k} {v}" for k, v in stats.made.items())
        where = f" -> {opts.out}" if opts.out != "-" else ""
        _say(f"brainstorm: {sum(stats.made.values())} tasks ({made}){where}; {stats.duplicates} near-duplicates "
             f"removed; {stats.calls} calls, {stats.unusable_replies} unusable replies, {stats.bad_items} bad items")  # fmt: skip
        if stats.shortfall:
            _say(f"brainstorm: warning: only {sum(stats.made.values())} of {opts.n_tasks} tasks after {stats.calls} "
                 f"calls ({stats.first_problem or 'the model kept repeating itself'}); try another --seed or --per-call")  # fmt: skip
    _say(usage_line(client.stats, client))
    if error is not None:
        raise error
    return stats


def _dry_run(client: Any, kinds: list[str], opts: BrainstormOptions) -> None:
    need = quotas(opts.n_tasks, kinds)
    n_calls = sum(math.ceil(q / opts.per_call) for q in need.values())
    per_prompt = {k: client.count_tokens([{"role": "user", "content": load_template(f"brainstorm-{k}.txt").text}])
                  for k in kinds}  # fmt: skip
    prompt_tokens = sum(per_prompt[k] * math.ceil(q / opts.per_call) for k, q in need.items())
    completion_tokens = n_calls * (opts.per_call * 70 + 20)
    line = (f"dry run: at least {n_calls} calls; about {prompt_tokens:,} prompt + {completion_tokens:,} "
            "completion tokens")  # fmt: skip
    if client.price_known:
        line += (
            f"; estimated cost ${client.estimate_cost(prompt_tokens, completion_tokens):.4f} at {client.model} prices"
        )
    else:
        line += f"; cost unknown (no price for {client.model} in LiteLLM's table)"
    _say(line + "; no request was sent")
