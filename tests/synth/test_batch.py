"""generate --batch against a loopback files + batches server (tests/batchserver.py): the same
records as online mode, the re-ask round as a second smaller batch, failed lines and expired
batches resubmitted for the missing requests only, a kill at the worst moment and a server restart
(nothing submitted twice, nothing lost), the budget checked before submission."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mghkit.errors import UsageError
from mghkit.llm.base import BudgetExceeded
from mghkit.synth.generate import generate
from tests.batchserver import BatchServer
from tests.conftest import REPO
from tests.fakeserver import FakeLLMServer, default_responder

TASKS = [{"kind": kind, "task": f"Find passages about topic {i}."}
         for i, kind in enumerate(["sts", "short-long", "long-short", "long-long", "short-short", "sts"])]  # fmt: skip


@pytest.fixture
def srv(tmp_path):
    with BatchServer(tmp_path / "srv") as s:
        yield s


def run(srv, tmp_path, **kw):
    options = dict(api_base=srv.url, batch=True, poll_interval=0, cache_dir=tmp_path / "cache",
                   out=tmp_path / "out.jsonl", rejects=tmp_path / "rejects.jsonl", check=False)  # fmt: skip
    options.update(kw)
    return generate(TASKS, options.pop("model", "openai/fake"), **options)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def content(rec: dict) -> tuple:
    return rec["id"], rec["query"], rec["positive_example"], tuple(n["text"] for n in rec["hard_negative_examples"])


def test_batch_records_are_the_online_records(srv, tmp_path):
    result = run(srv, tmp_path)
    assert result.stats.error is None and result.stats.written == len(TASKS)
    assert len(srv.batches) == 1 and list(srv.submitted.values()) == [1] * len(TASKS)
    with FakeLLMServer() as online:
        generate(
            TASKS, "openai/fake", api_base=online.url, cache_dir=tmp_path / "cache2", out=tmp_path / "online.jsonl"
        )
    assert sorted(map(content, lines(tmp_path / "out.jsonl"))) == sorted(map(content, lines(tmp_path / "online.jsonl")))
    # a rerun into a new file asks nothing: the answers are in the cache
    again = run(srv, tmp_path, out=tmp_path / "again.jsonl", rejects=None)
    assert again.stats.written == len(TASKS) and len(srv.batches) == 1


def test_reask_round_is_a_second_smaller_batch(tmp_path):
    def responder(body):  # tasks 1 and 3 answer prose first, JSON when told what was wrong
        prompt = body["messages"][0]["content"]
        if ("topic 1." in prompt or "topic 3." in prompt) and "no JSON object" not in prompt:
            return "Sorry, here is no JSON."
        return default_responder(body)

    with BatchServer(tmp_path / "srv", responder=responder) as srv:
        result = run(srv, tmp_path)
        assert result.stats.written == len(TASKS) and result.stats.reasked == 2
        assert [b["request_counts"]["total"] for b in srv.batches] == [len(TASKS), 2]
    reasked = [r for r in lines(tmp_path / "out.jsonl") if r["meta"]["reasked"]]
    assert len(reasked) == 2 and all(r["meta"]["usage"]["prompt_tokens"] > 0 for r in reasked)


def test_failed_line_is_resubmitted_alone(srv, tmp_path):
    srv.fail("topic 2.", times=1)
    result = run(srv, tmp_path)
    assert result.stats.error is None and result.stats.written == len(TASKS)
    assert sorted(srv.submitted.values()) == [1] * (len(TASKS) - 1) + [2]
    assert [b["request_counts"]["total"] for b in srv.batches] == [len(TASKS), 1]


def test_a_line_that_keeps_failing_fails_for_good_and_a_rerun_retries_it(srv, tmp_path):
    srv.fail("topic 2.", times=3)
    result = run(srv, tmp_path)
    assert result.stats.failed == 1 and result.stats.written == len(TASKS) - 1
    assert "rerun" in str(result.stats.error) and "HTTP 500" in str(result.stats.error)
    again = run(srv, tmp_path)  # the fault is spent: the rerun submits the one missing request
    assert again.stats.error is None and again.stats.written == 1 and again.stats.resumed == len(TASKS) - 1
    assert len(lines(tmp_path / "out.jsonl")) == len(TASKS)


def test_expired_batch_resubmits_only_the_unanswered(srv, tmp_path):
    srv.expire_next(answered=2)
    result = run(srv, tmp_path)
    assert result.stats.error is None and result.stats.written == len(TASKS)
    assert [b["status"] for b in srv.batches] == ["expired", "completed"]
    assert [b["request_counts"]["total"] for b in srv.batches] == [len(TASKS), len(TASKS) - 2]
    assert list(srv.submitted.values()) == [1, 1] + [2] * (len(TASKS) - 2)


def test_a_failed_batch_is_resubmitted(srv, tmp_path, caplog):
    srv.fail_next_batch()
    result = run(srv, tmp_path)
    assert result.stats.error is None and result.stats.written == len(TASKS)
    assert [b["status"] for b in srv.batches] == ["failed", "completed"]
    assert "injected: bad file" in caplog.text


def test_crash_after_create_before_the_id_is_recorded(srv, tmp_path, monkeypatch):
    """The worst moment: the provider has the batch, the ledger does not have its id yet."""
    from mghkit.llm.ledger import Ledger

    real = Ledger.set_submission

    def crash(self, sub, **fields):
        if fields.get("state") == "submitted":
            raise KeyboardInterrupt  # as a kill there would
        return real(self, sub, **fields)

    monkeypatch.setattr(Ledger, "set_submission", crash)
    with pytest.raises(KeyboardInterrupt):
        run(srv, tmp_path)
    monkeypatch.setattr(Ledger, "set_submission", real)
    assert len(srv.batches) == 1
    result = run(srv, tmp_path)
    assert result.stats.error is None and result.stats.written == len(TASKS)
    assert len(srv.batches) == 1 and set(srv.submitted.values()) == {1}  # adopted, not submitted again


def test_budget_is_checked_before_submission(srv, tmp_path):
    result = run(srv, tmp_path, model="gpt-4o", max_budget=0.0001)
    assert isinstance(result.stats.error, BudgetExceeded) and "nothing was submitted" in str(result.stats.error)
    assert srv.batches == [] and not any(c.startswith("POST") for c in srv.calls)


def test_cost_at_the_batch_price_and_cached_tokens(tmp_path):
    with BatchServer(tmp_path / "srv", cached_tokens=40) as srv:
        result = run(srv, tmp_path, model="gpt-4o")
    rec = lines(tmp_path / "out.jsonl")[0]
    u = rec["meta"]["usage"]
    assert u["cached_tokens"] == 40
    expected = (u["prompt_tokens"] - 40) * 1.25e-6 + 40 * 0.625e-6 + u["completion_tokens"] * 5e-6
    assert rec["meta"]["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert result.stats.usage.client.cached_tokens == 40 * len(TASKS)


def test_bad_batch_options_exit_before_anything_is_sent(srv, tmp_path):
    with pytest.raises(UsageError, match="no batch API"):
        run(srv, tmp_path, model="ollama/llama3")
    with pytest.raises(UsageError, match="over the provider's limit"):
        run(srv, tmp_path, batch_size=50_001)
    assert srv.calls == []


def _cli(tmp_path, url, *extra):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    args = [sys.executable, "-m", "mghkit", "generate", str(tasks), "--model", "openai/fake", "--api-base", url,
            "--batch", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out.jsonl"), *extra]  # fmt: skip
    return args, env


def test_kill_9_while_polling_and_a_server_restart(tmp_path):
    """A real kill -9 of the CLI while it waits, the server restarted from its state: the rerun
    submits nothing again and loses nothing; --batch-status shows the job."""
    srv = BatchServer(tmp_path / "srv", ticks=10_000).start()  # never finishes while the first run polls
    port = srv.port
    args, env = _cli(tmp_path, srv.url, "--poll-interval", "0.05", "--quiet")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if srv.batches and any(c.startswith("GET /v1/batches/") for c in srv.calls):
                break
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        srv.stop()
    assert len(srv.batches) == 1
    status = subprocess.run([*args[:5], "--batch-status", "--cache-dir", str(tmp_path / "cache")], env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert status.returncode == 0 and srv.batches[0]["id"] in status.stdout and "pending 6" in status.stdout
    with BatchServer(tmp_path / "srv", port=port, ticks=2) as again:
        done = subprocess.run([*args, "--poll-interval", "0"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert len(again.batches) == 1 and set(again.submitted.values()) == {1}
    assert len(lines(tmp_path / "out.jsonl")) == len(TASKS)
    assert "per 1,000 kept triplets" not in done.stderr  # openai/fake has no price


def test_brainstorm_batch(srv, tmp_path):
    from mghkit.synth.brainstorm import brainstorm

    kw = dict(n_tasks=6, kinds="sts,short-long", per_call=3, api_base=srv.url, cache_dir=tmp_path / "cache",
              batch=True, poll_interval=0)  # fmt: skip
    tasks = brainstorm("openai/fake", out=tmp_path / "tasks.jsonl", **kw)
    assert len(tasks) == 6 and tasks.stats.calls == 2
    assert len(srv.batches) == 1 and srv.batches[0]["request_counts"]["total"] == 2
    again = brainstorm("openai/fake", **kw)  # from the cache: nothing submitted
    assert [t.task for t in again] == [t.task for t in tasks] and len(srv.batches) == 1


def test_deployments_spread_batches_and_online_requests(tmp_path, monkeypatch):
    """Two deployments of one model name: batch files go to each in turn; online, a failing
    deployment is cooled down and the other takes the requests. Keys come from the environment."""
    monkeypatch.setenv("KEY_A", "sk-aaaaaaaaaaaa")
    monkeypatch.setenv("KEY_B", "sk-bbbbbbbbbbbb")
    with BatchServer(tmp_path / "a") as a, BatchServer(tmp_path / "b") as b:
        dep = {"model_list": [
            {"model_name": "big", "litellm_params": {"model": "openai/fake-a", "api_base": a.url, "api_key_env": "KEY_A"}},
            {"model_name": "big", "litellm_params": {"model": "openai/fake-b", "api_base": b.url, "api_key": "os.environ/KEY_B"}},
        ]}  # fmt: skip
        path = tmp_path / "deployments.json"
        path.write_text(json.dumps(dep))
        result = run(a, tmp_path, model="big", api_base=None, deployments=path, batch_size=2)
        assert result.stats.error is None and result.stats.written == len(TASKS)
        assert len(a.batches) == 2 and len(b.batches) == 1  # 3 files of 2 requests, in turn
        assert all(json.loads(x)["body"]["model"] == "fake-b"
                   for x in (tmp_path / "b" / "files" / b.batches[0]["input_file_id"]).read_text().splitlines())  # fmt: skip
    stored = b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file())
    assert b"aaaaaaaaaaaa" not in stored and b"bbbbbbbbbbbb" not in stored  # keys are written nowhere

    from tests.fakeserver import Status

    with FakeLLMServer() as good, FakeLLMServer() as bad:
        bad.add_fault(Status(500), times=10**6)
        dep = {"model_list": [
            {"model_name": "big", "litellm_params": {"model": "openai/fake", "api_base": good.url, "api_key_env": "KEY_A"}},
            {"model_name": "big", "litellm_params": {"model": "openai/fake", "api_base": bad.url, "api_key_env": "KEY_B"}},
        ], "allowed_fails": 1, "cooldown_time": 600}  # fmt: skip
        path.write_text(json.dumps(dep))
        tasks = [{"kind": "sts", "task": f"Find facts {i}."} for i in range(12)]
        r = generate(tasks, "big", deployments=path, cache_dir=tmp_path / "c2", concurrency=1)
        assert r.stats.written == 12 and good.count == 12 and 1 <= bad.count <= 2
        assert good.headers_seen[0]["authorization"] == "Bearer sk-aaaaaaaaaaaa"


def test_prompt_layout_puts_the_shared_part_first():
    """Provider prompt caching reuses a common prefix: the instructions shared by every request
    come first, the kind's rules next, the task and the drawn attributes last."""
    import os.path

    from mghkit.schema import Task
    from mghkit.synth.triplets import plan

    tasks = [Task(kind="sts", task="Find paraphrases of news sentences."), Task(kind="sts", task="Match forum questions."),
             Task(kind="long-long", task="Find articles on the same event.")]  # fmt: skip
    a, b, c = (job.messages[0]["content"] for job in plan(tasks, seed=3))
    shared_kind = os.path.commonprefix([a, b])  # noqa: RUF071 (strings, not paths)
    shared_all = os.path.commonprefix([a, c])  # noqa: RUF071 (strings, not paths)
    assert shared_kind.rstrip().endswith("(high: nearly the same words but a changed meaning).\n\nThe task:")
    assert len(shared_all) > 0.6 * len(a) and "The task:" not in a[len(shared_kind) :]


def test_dry_run_shows_the_batch_plan_at_the_batch_price(srv, tmp_path):
    result = run(srv, tmp_path, model="gpt-4o", dry_run=True, batch_size=4)
    e = result.stats.estimate
    assert e.batch_files == 2 and e.batch_bytes > 0 and e.requests == len(TASKS)
    assert (e.price_in, e.price_out) == (1.25e-6, 5e-6)  # gpt-4o's batch prices in LiteLLM's table
    assert srv.calls == [] and not (tmp_path / "cache").exists()
