"""Per-request attributes are a function of (seed, id) only, and cover their choices."""

from __future__ import annotations

from collections import Counter

from mghkit.schema import KINDS
from mghkit.synth.attributes import CLARITY, DIFFICULTY, QUERY_TYPES, SHAPES, attributes, request_seed


def test_same_seed_and_id_same_attributes_in_any_order():
    ids = [f"trip-{i}" for i in range(50)]
    forward = {i: attributes("short-long", 3, i) for i in ids}
    backward = {i: attributes("short-long", 3, i) for i in reversed(ids)}
    assert forward == backward


def test_seed_changes_the_draws():
    ids = [f"trip-{i}" for i in range(50)]
    assert [attributes("sts", 0, i) for i in ids] != [attributes("sts", 1, i) for i in ids]
    assert len({request_seed(s, "x") for s in range(20)}) == 20


def test_every_choice_is_reachable_for_every_kind():
    for kind in KINDS:
        draws = [attributes(kind, 0, f"id-{i}") for i in range(400)]
        assert {d["query_type"] for d in draws} == set(QUERY_TYPES)
        assert {d["clarity"] for d in draws} == set(CLARITY)
        assert {d["difficulty"] for d in draws} == set(DIFFICULTY)
        assert {d["query_length"] for d in draws} == set(SHAPES[kind][0])
        assert {d["doc_length"] for d in draws} == set(SHAPES[kind][1])
        # roughly uniform: no choice takes more than half of 400 draws
        assert max(Counter(d["difficulty"] for d in draws).values()) < 200
