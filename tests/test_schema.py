"""The record schema: ids, levels read by position, extra fields kept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mghkit.schema import LEVEL_RANK, LEVELS, Example, Task, Triplet, stable_id
from tests.conftest import make_triplet


def test_levels_most_similar_first_and_ranks():
    assert LEVELS == ("high", "medium", "medium-low", "low")
    assert [LEVEL_RANK[lv] for lv in LEVELS] == [4, 3, 2, 1]


def test_missing_id_is_stable_from_query_and_positive():
    a = Triplet.model_validate(make_triplet("q one", 1))
    b = Triplet.model_validate(make_triplet("q one", 1))
    c = Triplet.model_validate(make_triplet("q two", 1))
    assert a.id == b.id != c.id
    assert a.id.startswith("trip-")
    assert Triplet.model_validate(make_triplet("q", 1, id="mine")).id == "mine"


def test_papers_medium_medium_labels_are_read_by_position():
    rec = make_triplet("q", 2)
    for neg, label in zip(rec["hard_negative_examples"], ["high", "medium", "medium", "low"], strict=True):
        neg["similarity_level"] = label
    t = Triplet.model_validate(rec)
    assert [lv for lv, _ in t.negatives_by_level()] == list(LEVELS)
    assert t.negative("medium-low") == rec["hard_negative_examples"][2]["text"]


def test_short_negative_list_gives_none_for_missing_levels():
    rec = make_triplet("q", 3)
    rec["hard_negative_examples"] = rec["hard_negative_examples"][:2]
    t = Triplet.model_validate(rec)
    assert t.negative("medium") is not None and t.negative("low") is None


def test_extra_provenance_fields_survive_round_trip():
    t = Triplet.model_validate(make_triplet("q", 4, meta={"model": "m", "seed": 3}, source="x"))
    out = t.to_json()
    assert out["meta"] == {"model": "m", "seed": 3} and out["source"] == "x"
    assert Triplet.model_validate(out) == t


def test_wrong_types_raise():
    with pytest.raises(ValidationError):
        Triplet.model_validate({"query": 1, "positive_example": "p", "hard_negative_examples": []})
    with pytest.raises(ValidationError):
        Task.model_validate({"kind": "poem", "task": "x"})


def test_task_and_example_records():
    task = Task(kind="sts", task="Retrieve paraphrases")
    assert task.id == stable_id("sts", "Retrieve paraphrases", prefix="task-")
    ex = Example(id="e", stage=1, level="low", query="q", positive="p", negative="n")
    assert ex.to_json()["level"] == "low"


def test_stable_id_is_deterministic_and_separates_parts():
    assert stable_id("ab", "c") == stable_id("ab", "c") != stable_id("a", "bc")
