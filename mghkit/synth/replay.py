"""The warm-rerun fast path of generate: records rebuilt from the client's cache without a request.

A rerun of a finished (or interrupted) run into a new output file asks nothing it has asked
before: each job's finished record may be kept in the cache under a name that covers everything
it was built from (:meth:`~mghkit.synth.triplets.Job.result_name`), and otherwise its first answer
may be cached. Lookups are batched (one per ``chunk`` jobs), since this path runs at tens of
thousands of records a second. Clients without a cache (e.g. a scripted one) skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mghkit.jsonl import dumps, loads
from mghkit.llm.base import Completion, LLMClient
from mghkit.synth.triplets import Job, RequestParams, job_meta, make_triplet, parse_triplet

OnRecord = Callable[[bool, dict[str, Any]], None]


def replay_cached(
    jobs: Sequence[Job], client: LLMClient, params: RequestParams, on_record: OnRecord, chunk: int = 1024
) -> list[tuple[Job, Completion | None]]:
    """Hand over, without a request, every job whose result the client's cache already holds - a
    finished record kept by an earlier run, or else a cached first answer that is a valid triplet.
    ``on_record(ok, record)`` receives each. Returns the jobs left to run, each with its cached
    first answer when there was one (it still needs a re-ask), in order."""
    recall = getattr(client, "recall_results", None)
    lookup = getattr(client, "lookup_many", None)
    if recall is None or lookup is None:
        return [(job, None) for job in jobs]
    key = params.key()
    todo: list[tuple[Job, Completion | None]] = []
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        names = [job.result_name(key) for job in part]
        kept = recall(names)
        rest = []
        for job, name in zip(part, names, strict=True):
            value = kept.get(name)
            if value is None:
                rest.append((job, name))
            else:
                on_record(value[0] == "T", loads(value[1:]))
        hits = lookup([(job.messages, job.request_seed) for job, _ in rest],
                      response_format=params.response_format, temperature=params.temperature,
                      max_tokens=params.max_tokens)  # fmt: skip
        built = []
        for (job, name), hit in zip(rest, hits, strict=True):
            payload = None if hit is None else parse_triplet(hit.text, hit.finish_reason)[0]
            if hit is None or payload is None:
                todo.append((job, hit))
                continue
            record = make_triplet(job, payload, job_meta(job, client, dict(hit.usage), hit.cost_usd, False))
            built.append((name, True, record))
            on_record(True, record)
        keep_results(client, built)
    return todo


def keep_results(client: LLMClient, done: Sequence[tuple[str, bool, dict[str, Any]]]) -> None:
    """Keep finished records (result name, triplet or not, record) in the client's cache for
    :func:`replay_cached` (when it has a cache)."""
    store = getattr(client, "store_results", None)
    if store is not None and done:
        store([(name, ("T" if ok else "R") + dumps(record)) for name, ok, record in done])
