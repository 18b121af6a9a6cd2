"""curriculum: schedules, stage order, deterministic in-stage shuffle, the missing-level rule."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

import mghkit
from mghkit.errors import InputError, UsageError
from mghkit.schedules import (
    DEFAULT_INSTRUCTION,
    CurriculumStats,
    build_curriculum,
    iter_curriculum,
    parse_schedule,
)
from mghkit.schema import LEVELS, Example, Triplet
from tests.conftest import make_triplet, run_cli, run_main


def triplets(n: int = 6) -> list[Triplet]:
    return [Triplet.model_validate(make_triplet(f"question {i}", i, instruction=f"task {i % 2}")) for i in range(n)]


@pytest.mark.parametrize(
    ("schedule", "levels"),
    [
        ("coarse-to-fine", ["low", "medium-low", "medium", "high"]),
        ("fine-to-coarse", ["high", "medium", "medium-low", "low"]),
        ("fixed:medium-low", ["medium-low"]),
    ],
)
def test_stages_run_in_order_one_level_each(schedule, levels):
    ts = triplets()
    ex = build_curriculum(ts, schedule, seed=1)
    assert len(ex) == len(ts) * len(levels)
    assert [e.level for e in ex] == [lv for lv in levels for _ in ts]
    assert [e.stage for e in ex] == [s for s in range(1, len(levels) + 1) for _ in ts]
    for e in ex:  # each example is its triplet's query, positive and the negative of its level
        t = next(t for t in ts if t.id == e.source_id)
        assert (e.query, e.positive, e.negative, e.instruction) == (
            t.query,
            t.positive_example,
            t.negative(e.level),
            t.instruction,
        )
    assert len({e.id for e in ex}) == len(ex)


def test_random_mixes_levels_in_one_stage():
    ex = build_curriculum(triplets(10), "random", seed=0)
    assert {e.stage for e in ex} == {1}
    assert Counter(e.level for e in ex) == {lv: 10 for lv in LEVELS}
    first_half = {e.level for e in ex[:20]}
    assert len(first_half) > 1  # not grouped by level


def test_shuffle_is_within_stage_deterministic_and_seeded():
    ts = triplets(12)
    a = build_curriculum(ts, "coarse-to-fine", seed=7)
    b = build_curriculum(list(reversed(ts)), "coarse-to-fine", seed=7)
    c = build_curriculum(ts, "coarse-to-fine", seed=8)
    assert [e.id for e in a] == [e.id for e in b]  # order depends on (seed, id), not input order
    assert [e.id for e in a] != [e.id for e in c]
    assert {e.id for e in a} == {e.id for e in c}
    stage1 = [e.source_id for e in a if e.stage == 1]
    assert stage1 != [t.id for t in ts] and stage1 != sorted(stage1)  # actually shuffled


def test_stages_option_groups_levels():
    ex = build_curriculum(triplets(3), "coarse-to-fine", stages=2)
    assert Counter(e.stage for e in ex) == {1: 6, 2: 6}
    assert [e.stage for e in ex] == sorted(e.stage for e in ex)
    assert {e.level for e in ex if e.stage == 1} == {"low", "medium-low"}
    assert {e.level for e in ex if e.stage == 2} == {"medium", "high"}
    assert parse_schedule("fine-to-coarse", stages=1).stages == (tuple(LEVELS),)


def test_stage_size_caps_each_stage():
    stats = CurriculumStats()
    ex = list(iter_curriculum(triplets(5), "coarse-to-fine", stage_size=3, stats=stats))
    assert Counter(e.stage for e in ex) == {1: 3, 2: 3, 3: 3, 4: 3}
    assert stats.truncated == {1: 2, 2: 2, 3: 2, 4: 2}


def short(i: int, keep: int) -> Triplet:
    rec = make_triplet(f"short {i}", 100 + i)
    rec["hard_negative_examples"] = rec["hard_negative_examples"][:keep]
    return Triplet.model_validate(rec)


def test_missing_level_skip_is_the_default_rule():
    stats = CurriculumStats()
    ts = [*triplets(2), short(0, 2)]  # the third record has high and medium only
    ex = list(iter_curriculum(ts, "coarse-to-fine", stats=stats))
    assert stats.per_stage == {1: 2, 2: 2, 3: 3, 4: 3}
    assert stats.missing == {"medium-low": 1, "low": 1}
    assert {e.level for e in ex if e.source_id == ts[2].id} == {"medium", "high"}


def test_missing_level_drop_and_error():
    ts = [*triplets(2), short(0, 3)]
    stats = CurriculumStats()
    ex = list(iter_curriculum(ts, "coarse-to-fine", missing="drop", stats=stats))
    assert stats.dropped == 1 and len(ex) == 8
    # a record missing only levels the schedule does not use is kept
    assert len(build_curriculum(ts, "fixed:high", missing="drop")) == 3
    with pytest.raises(InputError, match="no low negative"):
        list(iter_curriculum(ts, "coarse-to-fine", missing="error"))


def test_a_repeated_id_stops_the_run_naming_file_line_and_id(tmp_path):
    ts = triplets(3)
    twin = ts[2].model_copy(update={"query": "another question", "id": ts[0].id})
    with pytest.raises(InputError, match=rf"<records>:4: id: '{ts[0].id}' repeats the id of line 1"):
        build_curriculum([*ts, twin], "coarse-to-fine")
    p = tmp_path / "t.jsonl"
    p.write_text("".join(t.model_dump_json() + "\n" for t in [*ts, twin]))
    with pytest.raises(InputError, match=rf"t.jsonl:4: id: '{ts[0].id}' repeats the id of line 1"):
        mghkit.curriculum(str(p), out=tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()


def test_empty_negative_counts_as_missing():
    t = short(1, 4)
    t.hard_negative_examples[0].text = "  "
    assert {e.level for e in build_curriculum([t], "coarse-to-fine")} == {"low", "medium-low", "medium"}


def test_default_instruction_when_record_has_none():
    t = Triplet.model_validate(make_triplet("q", 1))
    assert build_curriculum([t], "fixed:low")[0].instruction == DEFAULT_INSTRUCTION
    assert build_curriculum([t], "fixed:low", default_instruction="Find it")[0].instruction == "Find it"


@pytest.mark.parametrize("bad", ["hard-first", "fixed:extreme", "fixed", ""])
def test_unknown_schedule_lists_valid_choices(bad):
    with pytest.raises(UsageError, match="valid: coarse-to-fine, fine-to-coarse, random, fixed:high"):
        parse_schedule(bad)


@pytest.mark.parametrize(("schedule", "stages"), [("coarse-to-fine", 5), ("coarse-to-fine", 0), ("random", 2)])
def test_bad_stage_counts(schedule, stages):
    with pytest.raises(UsageError, match="--stages"):
        parse_schedule(schedule, stages)


def test_cli_in_process_and_subprocess_agree(tmp_path, capfd):
    p = tmp_path / "clean.jsonl"
    p.write_text("".join(json.dumps(make_triplet(f"question {i}", i)) + "\n" for i in range(4)))
    out = tmp_path / "train.jsonl"
    assert run_main("curriculum", str(p), "--schedule", "coarse-to-fine", "--seed", "3", "--out", str(out)) == 0
    err = capfd.readouterr().err
    assert "4 records -> 16 examples in 4 stage(s)" in err
    r = run_cli("curriculum", str(p), "--seed", "3", "--out", "-", "-q")
    assert r.returncode == 0 and r.stdout.decode() == out.read_text()
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) >= {"id", "stage", "level", "instruction", "query", "positive", "negative"}


def test_cli_bad_schedule_is_one_line_exit_2(tmp_path):
    p = tmp_path / "clean.jsonl"
    p.write_text(json.dumps(make_triplet("q", 1)) + "\n")
    r = run_cli("curriculum", str(p), "--schedule", "hardest-first")
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and "\n" not in err and "valid: coarse-to-fine" in err and b"Traceback" not in r.stderr


# ----------------------------------------------------------------------------- the front door
def test_order_is_sha256_of_seed_and_example_id():
    """Training files depend on this order: it must never change."""
    ex = build_curriculum(triplets(8), "random", seed=5)
    key = lambda e: hashlib.sha256(f"5\x1f{e.id}".encode()).digest()[:8]  # noqa: E731
    assert [e.id for e in ex] == [e.id for e in sorted(ex, key=key)]


def test_curriculum_in_memory_is_a_list_of_examples_with_stats(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written
    ts = triplets(3)
    rows = [ts[0], ts[1].to_json(), short(0, 3).to_json()]  # Triplets and dicts, one lacking "low"
    ex = mghkit.curriculum(rows, "coarse-to-fine", seed=2, stages=2)
    assert isinstance(ex, list) and all(isinstance(e, Example) for e in ex) and len(ex) == 11
    assert [e.id for e in ex] == [
        e.id for e in build_curriculum([ts[0], ts[1], short(0, 3)], "coarse-to-fine", 2, stages=2)
    ]
    assert ex.schedule.stages == (("low", "medium-low"), ("medium", "high"))
    assert (ex.stats.records, ex.stats.per_stage, ex.stats.missing, ex.stats.examples) == (
        3,
        {1: 5, 2: 6},
        {"low": 1},
        11,
    )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"^<records>:3: hard_negative_examples: no low negative"):
        mghkit.curriculum(rows, missing="error")
    bad = {**ts[2].to_json(), "query": 5}
    with pytest.raises(InputError, match=r"^<records>:2: query: "):
        mghkit.curriculum([ts[0], bad])
    with pytest.raises(InputError, match=r"<records>:1: hard_negative_examples.0.similarity_level: unknown level"):
        mghkit.curriculum([{**ts[0].to_json(), "hard_negative_examples": [{"similarity_level": "huge", "text": "x"}]}])
    with pytest.raises(UsageError, match="valid: skip, drop, error"):
        mghkit.curriculum(rows, missing="ignore")


def test_curriculum_through_a_path_and_to_a_file(tmp_path):
    p = tmp_path / "clean.jsonl"
    p.write_text("".join(json.dumps(make_triplet(f"question {i}", i)) + "\n" for i in range(4)))
    ex = mghkit.curriculum(p, "fixed:high", seed=3)
    assert len(ex) == 4 and {e.level for e in ex} == {"high"} and ex.stats.per_stage == {1: 4}
    out = tmp_path / "train.jsonl"
    res = mghkit.curriculum(str(p), "fixed:high", seed=3, out=out)
    assert res == [] and res.stats.per_stage == {1: 4}  # written to the file, not held
    assert [Example.model_validate_json(x) for x in out.read_text().splitlines()] == list(ex)
    with pytest.raises(UsageError, match="same as the input"):
        mghkit.curriculum(p, out=p)
