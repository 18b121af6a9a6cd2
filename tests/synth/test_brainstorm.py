"""`brainstorm` logic with a scripted client: quotas, near-duplicates, prompts, bad replies."""

from __future__ import annotations

import json

import pytest

from mghkit.errors import RuntimeFailure, UsageError
from mghkit.synth.brainstorm import NearDupIndex, brainstorm, parse_kinds


def reply(*tasks: str) -> str:
    return json.dumps({"tasks": [{"task": t, "query_desc": "q", "doc_desc": "d"} for t in tasks]})


def test_kinds_are_checked():
    assert parse_kinds("short-long, sts") == ["short-long", "sts"]
    with pytest.raises(UsageError, match=r"unknown kind 'medium'.*short-long"):
        parse_kinds("short-long,medium")


def test_near_duplicates_are_removed_and_more_calls_fill_the_quota():
    from tests.synth.scripted import ScriptedClient

    client = ScriptedClient().enqueue(
        reply(
            "Retrieve recipes given a list of ingredients",
            "Find recipes, given the list of ingredients.",
            "Given a legal question, retrieve statutes that answer it",
        ),
        reply("Retrieve recipe given a list of ingredient", "Given a symptom, retrieve medical articles about causes"),
    )
    tasks = brainstorm(client, n_tasks=3, kinds=["short-long"], per_call=3, seed=1)
    assert [t.task for t in tasks] == [
        "Retrieve recipes given a list of ingredients",
        "Given a legal question, retrieve statutes that answer it",
        "Given a symptom, retrieve medical articles about causes",
    ]
    assert len(client.history) == 2
    assert all(t.kind == "short-long" and t.meta["prompt_sha"] and t.meta["seed"] == 1 for t in tasks)
    assert len({t.id for t in tasks}) == 3


def test_split_over_kinds_with_kind_specific_prompts():
    import hashlib

    from tests.synth.scripted import ScriptedClient

    counter = iter(range(1000))

    def word() -> str:
        return hashlib.sha256(str(next(counter)).encode()).hexdigest()[:8]

    client = ScriptedClient(lambda m: reply(*(f"Retrieve {word()} passages given {word()} queries" for _ in range(2))))
    tasks = brainstorm(client, n_tasks=5, kinds=["long-short", "sts"], per_call=2, seed=0)
    assert [t.kind for t in tasks].count("long-short") == 3 and [t.kind for t in tasks].count("sts") == 2
    prompts = [h["messages"][0]["content"] for h in client.history]
    assert any("LONG (a paragraph or\nmore) and the desired documents are SHORT" in p for p in prompts)
    assert any("EXPRESSES THE SAME MEANING" in p for p in prompts)
    assert all("exactly 2 tasks" in p for p in prompts)


def test_unusable_replies_are_counted_and_calls_are_bounded():
    import asyncio

    from mghkit.synth.brainstorm import abrainstorm
    from tests.synth.scripted import ScriptedClient

    client = ScriptedClient(lambda m: "I am a language model and cannot do that.")
    tasks = asyncio.run(abrainstorm(client, n_tasks=4, kinds=["sts"], per_call=2, check=False))
    stats = tasks.stats
    assert tasks == [] and stats.shortfall == 4
    # no task at all is an error that says why (a partial shortfall is only a warning)
    assert isinstance(stats.stop, RuntimeFailure) and "no usable task in 8 replies" in str(stats.stop)
    assert "no JSON object in the reply" in str(stats.stop)
    with pytest.raises(RuntimeFailure, match="no usable task"):
        tasks.check()
    assert stats.unusable_replies == stats.calls == len(client.history) == 3 * 2 + 2
    assert stats.first_problem == "no JSON object in the reply"
    assert stats.usage.model == "scripted" and stats.usage.client.requests == stats.calls


def test_near_dup_index_keeps_distinct_tasks():
    idx = NearDupIndex()
    assert idx.add("Retrieve court rulings given a legal question")
    assert idx.add("Retrieve song lyrics given a melody description")
    assert not idx.add("retrieve court rulings given a legal question!")
