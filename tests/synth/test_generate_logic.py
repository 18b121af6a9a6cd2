"""Prompt logic of `generate` with a scripted client: prompts, re-ask, rejects, provenance."""

from __future__ import annotations

import asyncio
import json

from mghkit.prompts import load_template
from mghkit.schema import LEVELS, Reject, Task, Triplet
from mghkit.synth.generate import generate, run_jobs
from mghkit.synth.triplets import GeneratePrompt, plan
from tests.synth.scripted import ScriptedClient

TASKS = [
    Task(
        id="t-a",
        kind="short-long",
        task="Retrieve chemistry explanations given a question.",
        query_desc="a chemistry question",
        doc_desc="an explanation",
    ),
    Task(id="t-b", kind="sts", task="Retrieve sentences that state the same fact."),
]


def good(tag: str = "x", labels=LEVELS) -> str:
    return json.dumps(
        {
            "query": f"q {tag}",
            "positive_example": f"p {tag}",
            "hard_negative_examples": [{"similarity_level": lv, "text": f"{lv} {tag}"} for lv in labels],
        }
    )


def test_prompt_defines_the_four_levels_and_carries_the_attributes():
    job = next(plan(TASKS[:1], seed=3))
    text = job.messages[0]["content"]
    for level in LEVELS:
        assert f'"{level}":' in text  # each level is defined, in order
    assert text.index('"high":') < text.index('"medium":') < text.index('"medium-low":') < text.index('"low":')
    assert "Latin name of sodium" in text and "kalium" in text and "hydrogenium" in text.lower()
    assert TASKS[0].task in text and "a chemistry question" in text
    for value in job.attributes.values():
        assert value in text
    assert "Kind: short-long" in text


def test_prompt_sha_is_the_templates_and_differs_by_kind():
    prompt = GeneratePrompt()
    assert len(set(prompt.sha.values())) == 5
    assert prompt.main.sha == load_template("generate.txt").sha


def test_triplet_has_the_papers_format_and_provenance():
    client = ScriptedClient(lambda m: good("z", labels=("high", "medium", "medium", "low")))
    triplets, rejects = generate(TASKS, client, per_task=2, seed=5)
    assert rejects == [] and len(triplets) == 4
    assert len({t.id for t in triplets}) == 4
    t = triplets[0]
    assert [n.similarity_level for n in t.hard_negative_examples] == list(LEVELS)  # relabelled by position
    assert t.instruction == TASKS[0].task.strip() or t.instruction == TASKS[1].task.strip()
    assert set(t.meta) >= {"model", "prompt_sha", "seed", "usage", "cost_usd"}
    assert t.meta["model"] == "scripted" and t.meta["seed"] == 5
    assert t.meta["usage"]["total_tokens"] == 15
    # every request carried its own deterministic seed
    seeds = [h["seed"] for h in client.history]
    assert len(set(seeds)) == 4
    again = ScriptedClient(lambda m: good("z"))
    generate(TASKS, again, per_task=2, seed=5)
    assert sorted(h["seed"] for h in again.history) == sorted(seeds)
    assert sorted(h["messages"][0]["content"] for h in again.history) == sorted(
        h["messages"][0]["content"] for h in client.history
    )


def test_one_reask_fixes_a_bad_reply():
    client = ScriptedClient().enqueue('Sure! Here you go: {"query": "q"}', good())
    triplets, rejects = generate(TASKS[:1], client)
    assert rejects == [] and len(triplets) == 1
    assert len(client.history) == 2
    first, reask = client.history[0]["messages"], client.history[1]["messages"]
    # the first prompt and what was wrong - not the bad reply: it must fit where the first prompt did
    assert [m["role"] for m in reask] == ["user"] and reask[0]["content"].startswith(first[0]["content"].rstrip())
    assert "positive_example: missing" in reask[0]["content"] and "Sure! Here you go" not in reask[0]["content"]
    assert len(reask[0]["content"]) - len(first[0]["content"]) < 250
    assert triplets[0].meta["reasked"] is True
    assert triplets[0].meta["usage"]["total_tokens"] == 30  # both calls counted


def test_still_bad_after_one_reask_is_a_reject_with_raw_text_and_reason():
    client = ScriptedClient().enqueue(
        "no json at all", '{"query": "q", "positive_example": "p", "hard_negative_examples": ["a", "b"]}'
    )
    triplets, rejects = generate(TASKS[:1], client)
    assert triplets == [] and len(rejects) == 1
    assert len(client.history) == 2  # exactly one re-ask, bounded
    r = rejects[0]
    assert r.stage == "generate" and r.raw == "no json at all" and r.raw_reask.startswith('{"query"')
    (reason,) = r.reasons  # the reason of the reply after the re-ask, and the history in the detail
    assert (reason.code, reason.field) == ("negative_count", "hard_negative_examples")
    assert reason.detail == (
        "no JSON object in the reply; after one re-ask: hard_negative_examples: expected 4 negatives, got 2"
    )
    assert r.task_id == "t-a" and r.kind == "short-long" and r.id.startswith("trip-")
    assert r.meta["model"] == "scripted" and r.meta["reasked"] is True


def test_fenced_reply_with_trailing_prose_is_accepted_without_reask():
    client = ScriptedClient().enqueue(f"```json\n{good()}\n```\nAnything else?")
    triplets, _ = generate(TASKS[:1], client)
    assert len(triplets) == 1 and len(client.history) == 1 and triplets[0].meta["reasked"] is False


def test_every_job_ends_as_a_triplet_or_a_reject():
    replies = iter([good("1"), "garbage", "garbage", good("2"), "[]", good("3")])
    client = ScriptedClient(lambda m: next(replies))
    got: list[tuple[bool, dict]] = []
    stats = asyncio.run(
        run_jobs(plan(TASKS, per_task=2), client, concurrency=3, on_record=lambda ok, r: got.append((ok, r)))
    )
    assert len(got) == 4 and stats.written + stats.rejected == 4
    assert stats.rejected == 1 and sum(Triplet.model_validate(r).id == r["id"] for ok, r in got if ok) == 3
    (reject,) = [Reject.model_validate(r) for ok, r in got if not ok]
    assert reject.codes() == ["no_json"] and stats.reasons == {"no_json": 1}
