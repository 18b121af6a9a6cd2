"""The synthesis front door as a notebook uses it: `mghkit.brainstorm` / `mghkit.generate` on
in-memory records, typed records back, inside a running event loop, the Reject shape, stops."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

import mghkit
from mghkit.errors import InputError, RuntimeFailure, UsageError
from mghkit.llm import BudgetExceeded
from mghkit.schema import Reject, Task, Triplet
from tests.conftest import REPO
from tests.fakeserver import Reply, Status
from tests.synth.scripted import ScriptedClient

TASKS = [
    {"kind": "sts", "task": "Retrieve sentences that state the same fact."},
    Task(kind="short-long", task="Retrieve chemistry explanations given a question."),
]


def good(tag: str) -> str:
    return json.dumps({"query": f"q {tag}", "positive_example": f"p {tag}",
                       "hard_negative_examples": [f"n{i} {tag}" for i in range(4)]})  # fmt: skip


def test_records_in_typed_records_out_in_plan_order():
    client = ScriptedClient(lambda m: good(str(len(m[0]["content"]))))
    result = mghkit.generate(TASKS, client, per_task=2, seed=3, concurrency=4)
    triplets, rejects = result
    assert rejects == [] and len(triplets) == 4 and all(isinstance(t, Triplet) for t in triplets)
    task_ids = [Task.model_validate(t).id if isinstance(t, dict) else t.id for t in TASKS]
    assert [t.task_id for t in triplets] == [task_ids[0], task_ids[0], task_ids[1], task_ids[1]]
    assert [n.similarity_level for n in triplets[0].hard_negative_examples] == list(mghkit.LEVELS)
    stats = result.stats
    assert (stats.planned, stats.written, stats.rejected, stats.resumed) == (4, 4, 0, 0)
    assert stats.usage.model == "scripted" and stats.usage.client.requests == 4 and not stats.usage.price_known


def test_sync_forms_work_inside_a_running_event_loop(server, tmp_path):
    """What a Jupyter cell is: a coroutine running on the loop, calling the sync form."""

    async def cell():
        asyncio.get_running_loop()  # there is a running loop here
        tasks = mghkit.brainstorm("openai/fake", api_base=server.url, n_tasks=3, kinds="sts,short-long",
                                  per_call=2, cache_dir=tmp_path / "c")  # fmt: skip
        triplets, rejects = mghkit.generate(tasks, "openai/fake", api_base=server.url, cache_dir=tmp_path / "c")
        scripted = mghkit.generate(TASKS[:1], ScriptedClient(lambda m: good("x")))
        awaited = await mghkit.agenerate(TASKS[:1], ScriptedClient(lambda m: good("y")))
        return tasks, triplets, rejects, scripted, awaited

    tasks, triplets, rejects, scripted, awaited = asyncio.run(cell())
    assert len(tasks) == 3 and all(isinstance(t, Task) for t in tasks) and tasks.stats.calls == server.count - 3
    assert len(triplets) == 3 and rejects == [] and {t.task_id for t in triplets} == {t.id for t in tasks}
    assert all(t.meta["model"] == "openai/fake" for t in triplets)
    assert scripted.triplets[0].query == "q x" and awaited.triplets[0].query == "q y"


def test_rejects_are_reject_records_in_memory_and_on_disk_and_count_as_done(tmp_path):
    out, rej = tmp_path / "t.jsonl", tmp_path / "r.jsonl"
    client = ScriptedClient().enqueue("no json", "still none", good("b"))
    triplets, rejects = mghkit.generate(TASKS, client, out=out, rejects=rej, concurrency=1)
    assert len(triplets) == 1 and len(rejects) == 1
    (r,) = rejects
    assert isinstance(r, Reject) and r.stage == "generate" and r.codes() == ["no_json"]
    assert (r.raw, r.raw_reask) == ("no json", "still none") and r.meta["reasked"] is True
    on_disk = [json.loads(line) for line in rej.read_text().splitlines()]
    assert [Reject.model_validate(d) for d in on_disk] == rejects
    assert set(on_disk[0]) == {"stage", "id", "reasons", "task_id", "kind", "raw", "raw_reask", "meta"}
    assert [Triplet.model_validate_json(line) for line in out.read_text().splitlines()] == triplets
    # a rerun reads done ids from both files: nothing is asked again, nothing new comes back
    again = ScriptedClient()
    result = mghkit.generate(TASKS, again, out=out, rejects=rej)
    assert again.history == [] and list(result) == [[], []] and result.stats.resumed == 2


def test_bad_in_memory_tasks_are_one_line_input_errors():
    client = ScriptedClient()
    with pytest.raises(InputError, match=r"^<tasks>:2: kind: "):
        mghkit.generate([TASKS[0], {"kind": "sideways", "task": "x"}], client)
    with pytest.raises(InputError, match=r"^<tasks>:2: id: duplicate task id"):
        mghkit.generate([TASKS[0], TASKS[0]], client)
    with pytest.raises(InputError, match=r"<tasks>:1: expected a Task or a dict, got str"):
        mghkit.generate(["Find x"], client)
    with pytest.raises(InputError, match="no tasks"):
        mghkit.generate([], client)
    with pytest.raises(UsageError, match="expected a model name or an LLM client"):
        mghkit.generate(TASKS, 42)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--per-task"):
        mghkit.generate(TASKS, client, per_task=0)
    assert client.history == []


def test_failed_requests_raise_or_come_back_with_check_false(server, make_client, tmp_path):
    server.add_fault(Status(400), match="same fact", times=1)
    with pytest.raises(RuntimeFailure, match="1 of 2 requests failed"):
        mghkit.generate(TASKS, make_client(server))
    result = mghkit.generate(TASKS, make_client(server, cache_dir=tmp_path / "c2"), check=False)
    assert result.stats.failed == 0 and len(result.triplets) == 2  # the fault was used up: all done
    server.add_fault(Status(400), match="same fact", times=1)
    result = mghkit.generate(TASKS, make_client(server, cache_dir=tmp_path / "c3"), check=False)
    assert result.stats.failed == 1 and result.stats.undone == 1 and len(result.triplets) == 1
    with pytest.raises(RuntimeFailure, match="rerun the same command"):
        result.check()


def test_brainstorm_keeps_what_it_made_before_a_budget_stop(server, make_client, tmp_path):
    client = make_client(server, model="gpt-4o", max_budget=0.045)  # ~$0.042 worst case a call
    with pytest.raises(BudgetExceeded):
        mghkit.brainstorm(client, n_tasks=20, kinds="sts", per_call=1, concurrency=1)
    client = make_client(server, model="gpt-4o", max_budget=0.045, cache_dir=tmp_path / "c2")
    tasks = mghkit.brainstorm(client, n_tasks=20, kinds="sts", per_call=1, concurrency=1, out=tmp_path / "t.jsonl",
                              check=False)  # fmt: skip
    assert isinstance(tasks.stats.stop, BudgetExceeded) and 0 < len(tasks) < 20
    assert [Task.model_validate_json(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()] == tasks
    assert tasks.stats.usage.price_known and 0 < tasks.stats.usage.client.cost_usd <= 0.045


def test_brainstorm_dry_run_estimates_without_a_key_or_a_request(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tasks = mghkit.brainstorm("gpt-4o", n_tasks=7, kinds="sts,short-long", per_call=3, dry_run=True)
    est = tasks.stats.estimate
    assert tasks == [] and server.count == 0
    assert est.requests == 3 and est.prompt_tokens > 0 and est.cost_usd > 0


NOTEBOOK = """
import gc, json, logging, os, sys, warnings
import litellm  # first: its import adds warning filters of its own
import mghkit
env, filters, level = dict(os.environ), list(warnings.filters), logging.getLogger("LiteLLM").level
tasks = [{"kind": "sts", "task": "Find sentences with the same meaning"}]
triplets, rejects = mghkit.generate(tasks, "openai/fake", api_base=sys.argv[1], cache_dir=sys.argv[2])
assert len(triplets) == 1 and rejects == [], (triplets, rejects)
changed = {k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}
print(json.dumps({"env": sorted(changed), "filters": list(warnings.filters) == filters, "frozen": gc.get_freeze_count(),
                  "level": logging.getLogger("LiteLLM").level == level}))
"""


def test_a_notebook_without_the_cli_setup_works_offline_and_changes_no_process_state(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LITELLM_LOCAL_MODEL_COST_MAP", "OMP_WAIT_POLICY")}
    r = subprocess.run([sys.executable, "-c", NOTEBOOK, server.url, str(tmp_path / "c")], capture_output=True,
                       env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp_path, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    # LiteLLM falls back to its bundled price map (it may say so on stderr); stdout is ours alone
    assert json.loads(r.stdout) == {"env": [], "filters": True, "frozen": 0, "level": True}
    assert server.count == 1


def test_cli_renders_the_dry_run_estimate(server, tmp_path, monkeypatch, capsys):
    from tests.synth.test_cli_synth import run_main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(Task(kind="sts", task=f"Find sort {i}").to_json()) + "\n" for i in range(6)))
    code, out, err = run_main(["generate", str(tasks), "--per-task", "2", "--dry-run", "--cache-dir",
                               str(tmp_path / "c")], monkeypatch, capsys)  # fmt: skip
    assert code == 0 and out == "" and server.count == 0
    assert "dry run: 12 requests (12 planned, 0 already done); about " in err
    assert "estimated cost $" in err and "at gpt-4o prices" in err and err.rstrip().endswith("no request was sent")
    code, _, err = run_main(["brainstorm", "--n-tasks", "4", "--dry-run", "--model", "openai/unknown-x", "--api-base",
                             server.url], monkeypatch, capsys)  # fmt: skip
    assert code == 0 and "dry run: at least" in err and "cost unknown (no price for openai/unknown-x" in err


def test_cli_writes_reject_records_and_counts_their_codes(server, tmp_path, monkeypatch, capsys):
    from tests.synth.test_cli_synth import run_main

    server.add_fault(Reply("not json"), times=2)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(Task(kind="sts", task="Find paraphrases").to_json()) + "\n")
    args = ["generate", str(tasks), "--model", "openai/fake", "--api-base", server.url, "--out",
            str(tmp_path / "t.jsonl"), "--rejects", str(tmp_path / "r.jsonl"), "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 0, err
    (line,) = (tmp_path / "r.jsonl").read_text().splitlines()
    assert Reject.model_validate_json(line).codes() == ["no_json"]
    assert "generate: 0 new triplets" in err and f"1 rejected -> {tmp_path / 'r.jsonl'} [no_json x1]" in err
