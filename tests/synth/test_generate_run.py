"""`generate` end to end in-process through the real LiteLLM path: faults, concurrency, resume,
rejects, dry run - counted at the server and in the files. Each run gets a fresh client (a rerun)
built as the CLI would, with fast backoff."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mghkit.errors import RuntimeFailure
from mghkit.llm import BudgetExceeded, ClientConfig, open_client
from mghkit.schema import Reject, Task, Triplet
from mghkit.synth.generate import GenerateStats, generate
from tests.fakeserver import Drop, Malformed, Reply, Slow, Status, Truncated


def write_tasks(path: Path, n: int) -> Path:
    kinds = ["short-long", "long-short", "long-long", "short-short", "sts"]
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(Task(kind=kinds[i % 5], task=f"Retrieve things of sort {i} given a question").to_json())
                + "\n"
            )
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def config(srv, tmp_path, **kw) -> ClientConfig:
    base = dict(
        model="openai/fake",
        api_base=srv.url,
        cache_dir=tmp_path / "cache",
        backoff_base=0.01,
        timeout=5.0,
        max_retries=4,
    )
    base.update(kw)
    return ClientConfig(**base)


def opts(tmp_path, **kw) -> dict:
    base = dict(out=str(tmp_path / "t.jsonl"), rejects=str(tmp_path / "r.jsonl"), per_task=2, concurrency=4)
    base.update(kw)
    return base


def run_generate(tasks: Path, cfg: ClientConfig, options: dict) -> GenerateStats:
    """One run as the CLI makes it: a fresh client, records streamed to files (and not collected)."""
    client = open_client(cfg, need_key=not options.get("dry_run"))
    try:
        return generate(tasks, client, collect=False, **options).stats
    finally:
        client.close()


def test_misbehaving_server_every_job_accounted_for(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
    server.latency = 0.02
    server.add_fault(Status(429, headers={"Retry-After": "0.05"}), times=3)
    server.add_fault(Status(500), times=2)
    server.add_fault(Drop(), times=2)
    server.add_fault(Truncated(), times=1)
    server.add_fault(Malformed(), times=1)
    # content faults for one task: prose and a broken object, then the re-ask is still bad -> reject
    server.add_fault(Reply('I think the answer is {"query": "x"'), match="sort 3 ", times=2)
    server.add_fault(Reply("Sorry, no."), match="sort 3 ", times=2)
    stats = run_generate(tasks, config(server, tmp_path), opts(tmp_path))
    out, rej = lines(tmp_path / "t.jsonl"), lines(tmp_path / "r.jsonl")
    ids = [r["id"] for r in out] + [r["id"] for r in rej]
    assert len(ids) == 20 and len(set(ids)) == 20  # no loss, no duplicate
    assert len(rej) == 2 and all(r["raw"] and r["reasons"][0]["code"] and "raw_reask" in r for r in rej)
    assert all(Reject.model_validate(r).stage == "generate" for r in rej)
    assert {r["task_id"] for r in rej} == {json.loads(line)["id"] for line in tasks.read_text().splitlines()[3:4]}
    for r in out:
        Triplet.model_validate(r)
    assert stats.written == 18 and stats.rejected == 2
    # after a success the same request is never sent again
    assert max(Counter(server.answered).values()) == 1
    assert server.max_concurrency <= 4


def test_concurrency_is_bounded_and_used(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 12)
    server.latency = 0.15
    run_generate(tasks, config(server, tmp_path), opts(tmp_path, per_task=1, concurrency=4))
    assert server.count == 12
    assert 2 <= server.max_concurrency <= 4


def test_rerun_resumes_and_sends_nothing_more(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 5)
    run_generate(tasks, config(server, tmp_path), opts(tmp_path))
    assert server.count == 10
    # a crash mid-line: the partial last line is cut and that record redone (from the cache)
    out = tmp_path / "t.jsonl"
    text = out.read_text()
    last = text.splitlines()[-1]
    out.write_text(text[: len(text) - len(last) // 2 - 1])
    stats = run_generate(tasks, config(server, tmp_path), opts(tmp_path))
    assert server.count == 10  # the cut record came from the cache
    assert stats.resumed == 9 and stats.written == 1
    ids = [r["id"] for r in lines(out)]
    assert len(ids) == 10 == len(set(ids))
    # with a fresh cache, a full rerun still sends nothing: everything is already done
    stats = run_generate(tasks, config(server, tmp_path, cache_dir=tmp_path / "other"), opts(tmp_path))
    assert server.count == 10 and stats.written == 0 and stats.resumed == 10


def test_rejects_count_as_done_on_rerun(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    server.add_fault(Reply("not json"), times=100)
    run_generate(tasks, config(server, tmp_path), opts(tmp_path, per_task=1))
    assert len(lines(tmp_path / "r.jsonl")) == 2 and server.count == 4  # one re-ask each
    run_generate(tasks, config(server, tmp_path, cache_dir=tmp_path / "c2"), opts(tmp_path, per_task=1))
    assert server.count == 4 and len(lines(tmp_path / "r.jsonl")) == 2


def test_a_dead_server_stops_the_run_quickly_and_a_rerun_finishes(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 30)
    server.add_fault(Status(503), times=10_000)
    with pytest.raises(RuntimeFailure, match="in a row failed"):
        run_generate(tasks, config(server, tmp_path, max_retries=1), opts(tmp_path, per_task=1, concurrency=2))
    assert server.count < 30  # it stopped instead of hammering 30 x 2 requests
    server.rules.clear()
    run_generate(tasks, config(server, tmp_path, max_retries=1), opts(tmp_path, per_task=1, concurrency=2))
    assert len({r["id"] for r in lines(tmp_path / "t.jsonl")}) == 30


def test_budget_stop_keeps_what_arrived_and_rerun_continues(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 20)
    cfg = config(server, tmp_path, model="gpt-4o", max_budget=0.05)  # ~$0.04 worst case a request
    with pytest.raises(BudgetExceeded):
        run_generate(tasks, cfg, opts(tmp_path, per_task=1, concurrency=1))
    first = lines(tmp_path / "t.jsonl")
    assert 0 < len(first) < 20 and server.count == len(first)
    spent = sum(r["meta"]["cost_usd"] for r in first)
    assert 0 < spent <= 0.05
    run_generate(tasks, config(server, tmp_path, model="gpt-4o"), opts(tmp_path, per_task=1))
    assert len({r["id"] for r in lines(tmp_path / "t.jsonl")}) == 20 and server.count == 20


def test_dry_run_sends_nothing_and_estimates(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
    result = generate(tasks, "gpt-4o", cache_dir=tmp_path / "c", dry_run=True, **opts(tmp_path))
    assert server.count == 0 and not (tmp_path / "t.jsonl").exists()
    assert list(result) == [[], []]
    est = result.stats.estimate
    assert est.requests == 12 and result.stats.planned == 12 and result.stats.resumed == 0
    assert est.prompt_tokens > 12 * 100 and est.completion_tokens > 12 * 100
    assert est.cost_usd == pytest.approx(est.prompt_tokens * est.price_in + est.completion_tokens * est.price_out)
    assert 0 < est.cost_usd < 1


def test_slow_server_past_timeout_is_retried(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    server.add_fault(Slow(2.0), times=1)
    cfg = config(server, tmp_path, timeout=0.5, resend_timeouts=True)  # as a hosted API
    run_generate(tasks, cfg, opts(tmp_path, per_task=1, concurrency=1))
    assert len(lines(tmp_path / "t.jsonl")) == 2 and server.count == 3


def test_a_refused_request_is_reported_not_rejected_and_a_rerun_retries_it(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    server.add_fault(Status(400), match="sort 2 ", times=1)
    with pytest.raises(RuntimeFailure, match="1 of 4 requests failed"):
        run_generate(tasks, config(server, tmp_path), opts(tmp_path, per_task=1))
    assert len(lines(tmp_path / "t.jsonl")) == 3 and lines(tmp_path / "r.jsonl") == []
    assert server.count == 4  # a 400 is not retried
    run_generate(tasks, config(server, tmp_path), opts(tmp_path, per_task=1))
    assert len(lines(tmp_path / "t.jsonl")) == 4 and server.count == 5


def _by_id(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["id"])


def test_warm_cache_rerun_to_a_new_file_sends_nothing_and_writes_the_same_records(server, tmp_path):
    import sqlite3

    tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
    # one job needs a re-ask, one ends as a reject: both must come back from the cache too
    server.add_fault(Reply("Sorry, here it is: {broken"), match="sort 1 ", times=1)
    server.add_fault(Reply("not json"), match="sort 4 ", times=4)
    first = run_generate(tasks, config(server, tmp_path), opts(tmp_path))
    sent = server.count
    assert first.written == 10 and first.rejected == 2 and first.reasked == 1
    expected = _by_id(lines(tmp_path / "t.jsonl")), _by_id(lines(tmp_path / "r.jsonl"))
    db = tmp_path / "cache" / "llm-cache.sqlite3"
    # 1) from the finished records kept in the cache; 2) with those gone, from the cached answers alone
    for round_ in ("records", "answers"):
        if round_ == "answers":
            with sqlite3.connect(db) as con:
                con.execute("DELETE FROM results")
        o = opts(tmp_path, out=str(tmp_path / f"{round_}.jsonl"), rejects=str(tmp_path / f"{round_}-r.jsonl"))
        stats = run_generate(tasks, config(server, tmp_path), o)
        assert server.count == sent, round_  # zero requests
        assert (stats.written, stats.rejected, stats.reasked) == (10, 2, 1)
        got = _by_id(lines(Path(o["out"]))), _by_id(lines(Path(o["rejects"])))
        assert got == expected, round_
    with sqlite3.connect(db) as con:  # the replay from answers kept the records again
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 12


def test_kept_records_are_not_reused_when_the_task_or_seed_changes(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    run_generate(tasks, config(server, tmp_path), opts(tmp_path, per_task=1))
    assert server.count == 2
    changed = tmp_path / "changed.jsonl"
    rows = [json.loads(line) for line in tasks.read_text().splitlines()]
    rows[0]["task"] += " (reworded)"  # same id, new text: a new prompt, so a new request
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_generate(changed, config(server, tmp_path), opts(tmp_path, per_task=1, out=str(tmp_path / "c.jsonl")))
    assert server.count == 3
    out = {r["task_id"]: r for r in lines(tmp_path / "c.jsonl")}
    assert out[rows[0]["id"]]["instruction"].endswith("(reworded)")
    run_generate(tasks, config(server, tmp_path), opts(tmp_path, per_task=1, seed=1, out=str(tmp_path / "s.jsonl")))
    assert server.count == 5  # another seed: other ids, other requests
