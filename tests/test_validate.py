"""validate: every reject reason, normalised clean output, dedup, --strict, the level check, the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import mghkit
from mghkit.errors import InputError, UsageError
from mghkit.jsonl import iter_lines
from mghkit.schema import Reject, Triplet
from mghkit.validate import LevelStats, ValidateConfig, collect_positives, validate_file, validate_lines
from tests.conftest import make_triplet, run_cli, run_main


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def outcomes(tmp_path, rows, **cfg):
    p = write(tmp_path / "t.jsonl", rows)
    return list(validate_lines(iter_lines(p), ValidateConfig(**cfg), positives=collect_positives(iter_lines(p))))


def codes(o):
    return [r.code for r in o.reasons]


def with_negs(i, texts, labels=("high", "medium", "medium-low", "low")):
    rec = make_triplet(f"query number {i}", i)
    rec["hard_negative_examples"] = [{"similarity_level": lv, "text": t} for lv, t in zip(labels, texts, strict=False)]
    return rec


def test_clean_records_pass_and_are_normalised(tmp_path):
    rec = make_triplet("  What is the  Latin name\tof sodium?\u200b ", 1, meta={"model": "m"})
    rec["hard_negative_examples"][2]["similarity_level"] = "medium"  # the paper's (high, medium, medium, low)
    (o,) = outcomes(tmp_path, [rec])
    assert o.reasons == [] and o.clean is not None
    assert o.clean["query"] == "What is the Latin name of sodium?"
    assert [n["similarity_level"] for n in o.clean["hard_negative_examples"]] == ["high", "medium", "medium-low", "low"]
    assert o.clean["meta"] == {"model": "m"} and o.clean["id"].startswith("trip-")


@pytest.mark.parametrize(
    ("make", "code", "field"),
    [
        (lambda: {"positive_example": "p", "hard_negative_examples": []}, "schema", "query"),
        (lambda: {**make_triplet("q", 1), "hard_negative_examples": "x"}, "schema", "hard_negative_examples"),
        (lambda: with_negs(1, ["aa one", "bb two", "cc three"]), "too_few_negatives", "hard_negative_examples"),
        (
            lambda: with_negs(1, ["a1 x", "b2 y", "c3 z", "d4 w", "e5 v"], ["high"] * 5),
            "too_many_negatives",
            "hard_negative_examples",
        ),
        (
            lambda: with_negs(1, ["a1 x", "b2 y", "c3 z", "d4 w"], ["high", "huge", "medium", "low"]),
            "unknown_level",
            "hard_negative_examples.1.similarity_level",
        ),
        (
            lambda: with_negs(1, ["a1 x", "b2 y", "c3 z", "d4 w"], ["low", "medium", "medium", "high"]),
            "levels_out_of_order",
            "hard_negative_examples",
        ),
        (lambda: {**make_triplet("q", 1), "query": " \u200b "}, "empty_text", "query"),
        (lambda: {**make_triplet("q", 1), "query": "x"}, "too_short", "query"),
        (lambda: {**make_triplet("q", 1), "positive_example": "y" * 30}, "too_long", "positive_example"),
        (
            lambda: {**make_triplet("same text", 1), "positive_example": "Same text!"},
            "positive_is_query",
            "positive_example",
        ),
        (
            lambda: with_negs(1, ["Query number 1", "b2 y", "c3 z", "d4 w"]),
            "negative_is_query",
            "hard_negative_examples.0.text",
        ),
        (lambda: with_negs(1, ["a1 x", "b2 y", "c3 z", "d4 w"]), None, None),
    ],
)
def test_each_reason(tmp_path, make, code, field):
    (o,) = outcomes(tmp_path, [make()], max_chars=25 if code == "too_long" else 20_000)
    if code is None:
        assert o.reasons == []
        return
    assert code in codes(o)
    assert next(r for r in o.reasons if r.code == code).field == field
    assert o.clean is None


def test_negative_near_identical_to_positive(tmp_path):
    rec = make_triplet("q1 text", 1)
    rec["hard_negative_examples"][3]["text"] = rec["positive_example"] + " indeed"
    (o,) = outcomes(tmp_path, [rec])
    assert codes(o) == ["negative_is_positive"]
    (o,) = outcomes(tmp_path, [rec], pair_threshold=0.99)  # the threshold is honoured
    assert o.reasons == []


def test_duplicate_negatives(tmp_path):
    rec = make_triplet("q1 text", 1)
    rec["hard_negative_examples"][1]["text"] = rec["hard_negative_examples"][0]["text"].upper()
    (o,) = outcomes(tmp_path, [rec])
    assert codes(o) == ["duplicate_negatives"] and o.reasons[0].field == "hard_negative_examples.1.text"


def test_negative_equal_to_another_records_positive_even_further_down(tmp_path):
    a, b = make_triplet("first question", 1), make_triplet("second question", 2)
    a["hard_negative_examples"][0]["text"] = b["positive_example"].lower() + "."
    res = outcomes(tmp_path, [a, b])
    assert codes(res[0]) == ["negative_is_other_positive"] and "line 2" in res[0].reasons[0].detail
    assert res[1].reasons == []


def test_exact_and_near_duplicate_queries_keep_the_first(tmp_path):
    rows = [
        make_triplet("How do I reset the password of my email account on my new phone?", 1),
        make_triplet("how do i reset the password of my EMAIL account on my new phone", 2),
        make_triplet("How do I reset the password of my email account on my new phone today?", 3),  # Jaccard 0.91
        make_triplet("What is the boiling point of water at altitude?", 4),
    ]
    res = outcomes(tmp_path, rows)
    assert [codes(o) for o in res] == [[], ["duplicate_query"], ["near_duplicate_query"], []]
    assert "line 1" in res[2].reasons[0].detail
    assert [codes(o) for o in outcomes(tmp_path, rows, dedup_threshold=0.95)][2] == []
    assert [codes(o) for o in outcomes(tmp_path, rows, dedup=False)] == [[], [], [], []]


def test_dedup_works_across_batches_and_only_against_kept_records(tmp_path):
    bad_first = with_negs(0, ["a1 x", "b2 y", "c3 z"])  # rejected: its query must not block a later one
    bad_first["query"] = "shared question about volcanoes"
    rows = [bad_first] + [make_triplet(f"unique question {i} about topic {i * 7}", i) for i in range(1, 9)]
    rows.append(make_triplet("shared question about volcanoes", 50))
    rows.append(make_triplet("unique question 3 about topic 21", 51))  # dup of line 4, in a later batch
    res = outcomes(tmp_path, rows, batch_size=3)
    assert codes(res[0]) == ["too_few_negatives"]
    assert res[9].reasons == []
    assert codes(res[10]) == ["duplicate_query"] and "line 4" in res[10].reasons[0].detail


def test_a_repeated_id_is_rejected_and_only_kept_records_hold_an_id(tmp_path):
    rows = [make_triplet(f"question {i} about topic {i * 7}", i, id=f"id-{i}") for i in range(8)]
    rows[1]["id"] = "id-0"  # same batch as line 1
    rows[6]["id"] = "id-2"  # a later batch
    rows[3] = with_negs(3, ["one", "two"]) | {"id": "id-x"}  # rejected: does not hold "id-x"
    rows[7]["id"] = "id-x"
    rows.append(make_triplet("question 4 about topic 28", 40, id="id-4"))  # duplicate query and id: one reason
    rows.append(make_triplet("question 9 about topic 63", 9, id=""))  # an empty id is filled, not ""
    for dedup in (True, False):
        res = outcomes(tmp_path, rows, batch_size=3, dedup=dedup)
        assert [(o.lineno, codes(o)) for o in res if o.reasons] == [
            (2, ["duplicate_id"]), (4, ["too_few_negatives"]), (7, ["duplicate_id"]), (9, ["duplicate_id"])]  # fmt: skip
        assert res[6].reasons[0].detail == "same id as line 3" and res[6].reasons[0].field == "id"
        assert res[7].clean is not None and res[7].clean["id"] == "id-x"
        assert res[9].clean is not None and res[9].clean["id"].startswith("trip-")
    with pytest.raises(InputError, match=r":2: id: same id as line 1 \(duplicate_id; --strict\)"):
        mghkit.validate_triplets(write(tmp_path / "s.jsonl", rows), strict=True)
    clean, rejects, _ = mghkit.validate_triplets(rows)  # in memory: the same rule
    assert len({t.id for t in clean}) == len(clean) == 6 and [r.line for r in rejects] == [2, 4, 7, 9]


def test_unparseable_lines_become_rejects_with_line_numbers(tmp_path):
    res = outcomes(tmp_path, [make_triplet("good one", 1), "{not json", "[1]", make_triplet("good two", 2)])
    assert [(o.lineno, codes(o)) for o in res] == [(1, []), (2, ["unparseable"]), (3, ["unparseable"]), (4, [])]
    assert res[1].raw == "{not json"


def test_validate_file_report_and_strict(tmp_path):
    p = write(tmp_path / "t.jsonl", [make_triplet("good one", 1), "{oops", make_triplet("good one", 2)])
    clean, rejects = [], []
    report = validate_file(str(p), clean.append, rejects.append)
    assert (report.total, report.clean, report.rejected) == (3, 1, 2)
    assert report.reasons == {"unparseable": 1, "duplicate_query": 1}
    assert all(isinstance(r, Reject) and r.stage == "validate" and r.file == str(p) for r in rejects)
    assert rejects[0].line == 2 and rejects[0].raw == "{oops" and rejects[0].codes() == ["unparseable"]
    assert rejects[1].record is not None and rejects[1].record["query"] == "good one" and rejects[1].raw is None
    seen = []
    with pytest.raises(InputError) as e:
        validate_file(str(p), seen.append, cfg=ValidateConfig(strict=True))
    assert str(e.value).startswith(f"{p}:2: not valid JSON")
    assert len(seen) == 1  # what came before the problem was written


def bow_embed(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words embedder (hashed words), so the level logic can be checked exactly."""
    out = np.zeros((len(texts), 4096), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 4096] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def graded(i: int, order=(4, 3, 2, 1), pos_overlap=5) -> dict:
    """Negatives sharing ``order[k]`` words with the query: more shared words = more similar."""
    q = [f"q{i}w{k}" for k in range(6)]
    rec = {"query": " ".join(q), "positive_example": " ".join(q[:pos_overlap] + [f"p{i}x{k}" for k in range(3)])}
    rec["hard_negative_examples"] = [
        {"similarity_level": lv, "text": " ".join(q[:n] + [f"n{i}l{j}x{k}" for k in range(6 - n)])}
        for j, (lv, n) in enumerate(zip(["high", "medium", "medium-low", "low"], order, strict=True))
    ]
    return rec


def test_level_check_rejects_a_negative_that_outscores_the_positive_and_reports_order(tmp_path):
    rows = [graded(1), graded(2), graded(3, order=(2, 3, 4, 1)), graded(4, pos_overlap=1)]
    p = write(tmp_path / "t.jsonl", rows)
    stats, clean, rejects = LevelStats(), [], []
    report = validate_file(str(p), clean.append, rejects.append, embed=bow_embed, level_stats=stats)
    assert [r.line for r in rejects] == [4]
    assert rejects[0].codes() == ["negative_outscores_positive"]
    lv = report.to_json()["levels"]
    assert lv["checked"] == 4
    assert lv["ordered_share"] == 0.75  # record 3 is mislabelled
    assert lv["mean_cosine"]["high"] > lv["mean_cosine"]["medium"] > lv["mean_cosine"]["low"]
    assert 0 < lv["spearman"]["pooled"] <= 1
    stats.plot(tmp_path / "levels.png")
    assert (tmp_path / "levels.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_writes_clean_rejects_and_report(tmp_path, capfd):
    p = write(tmp_path / "t.jsonl", [make_triplet("good one", 1), "{oops", make_triplet("good one", 2)])
    out, rej, rep = tmp_path / "c.jsonl", tmp_path / "r.jsonl", tmp_path / "rep.json"
    code = run_main("validate", str(p), "--out", str(out), "--rejects", str(rej), "--report", str(rep))
    err = capfd.readouterr().err
    assert code == 0
    assert len(out.read_text().splitlines()) == 1 and len(rej.read_text().splitlines()) == 2
    assert json.loads(rep.read_text())["reasons"] == {"unparseable": 1, "duplicate_query": 1}
    assert "3 records, 1 clean, 2 rejected" in " ".join(err.split()) and "duplicate_query" in err


def test_cli_strict_exits_2_and_keeps_existing_output(tmp_path, capfd):
    p = write(tmp_path / "t.jsonl", [make_triplet("good one", 1), with_negs(2, ["a1 x", "b2 y", "c3 z"])])
    out = tmp_path / "c.jsonl"
    out.write_text("previous\n")
    code = run_main("validate", str(p), "--out", str(out), "--strict")
    err = capfd.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"{p}:2: hard_negative_examples: 3 negatives, need 4" in err
    assert out.read_text() == "previous\n"


def test_cli_plot_needs_check_levels(tmp_path, capfd):
    p = write(tmp_path / "t.jsonl", [make_triplet("good one", 1)])
    assert run_main("validate", str(p), "--plot", str(tmp_path / "x.png")) == 2
    assert "--plot needs --check-levels" in capfd.readouterr().err


def test_pipe_validate_into_curriculum_in_real_processes(tmp_path):
    rows = [make_triplet(f"distinct question {i} on subject {i * 13}", i) for i in range(5)] + ["garbage"]
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    v = run_cli("validate", "-", "--out", "-", "-q", stdin=data)
    assert v.returncode == 0, v.stderr
    assert len(v.stdout.splitlines()) == 5
    c = run_cli("curriculum", "-", "--schedule", "coarse-to-fine", "--out", "-", "-q", stdin=v.stdout)
    assert c.returncode == 0, c.stderr
    examples = [json.loads(x) for x in c.stdout.splitlines()]
    assert len(examples) == 20 and [e["stage"] for e in examples] == sorted(e["stage"] for e in examples)


@pytest.mark.slow
def test_check_levels_with_the_embedded_minilm(tmp_path):
    rec = {
        "query": "What is the Latin name of sodium?",
        "positive_example": "Sodium's Latin name is natrium, which is why its chemical symbol is Na.",
        "hard_negative_examples": [
            {"similarity_level": "high", "text": "Potassium's Latin name is kalium, which gives it the symbol K."},
            {"similarity_level": "medium", "text": "The word sodium comes from soda, a name for sodium carbonate."},
            {"similarity_level": "medium", "text": "Hydrogen was called hydrogenium, meaning water-former."},
            {"similarity_level": "low", "text": "Table salt is used to season food and preserve meat."},
        ],
    }
    p = write(tmp_path / "t.jsonl", [rec])
    r = run_cli("validate", str(p), "--check-levels", "--embedder", "local", "--report", str(tmp_path / "r.json"),
                "--plot", str(tmp_path / "l.png"), "--out", str(tmp_path / "c.jsonl"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    lv = json.loads((tmp_path / "r.json").read_text())["levels"]
    assert lv["checked"] == 1 and lv["mean_cosine"]["positive"] > lv["mean_cosine"]["low"]
    assert (tmp_path / "l.png").stat().st_size > 1000
    assert b"level check" in r.stderr


def _mixed_rows() -> list:
    """Every kind of problem, spread so that duplicates and false negatives cross batch boundaries."""
    rows: list = []
    for i in range(60):
        rows.append(make_triplet(f"distinct question {i} about subject {i * 13} and more", i))
    rows[5] = "{not json"
    rows[9] = with_negs(9, ["only one", "and two"])
    rows[20] = make_triplet("distinct question 3 about subject 39 and more", 99)  # exact dup of line 4
    rows[33] = make_triplet("distinct question 7 about subject 91 and more today", 98)  # near dup of line 8
    rows[41]["hard_negative_examples"][1]["text"] = rows[57]["positive_example"]  # a later record's positive
    rows[50] = [1, 2]
    rows[12]["id"] = rows[44]["id"] = "shared-id"  # a repeated id, across batches: line 45 rejected
    return rows


@pytest.mark.parametrize("json_text", [False, True])
def test_worker_processes_give_the_same_output_as_in_process(tmp_path, monkeypatch, json_text):
    import mghkit.validate.parallel as v

    monkeypatch.setattr(v, "PARALLEL_BATCH", 7)  # many batches, each handled by some worker
    p = write(tmp_path / "t.jsonl", _mixed_rows())
    results = {}
    for workers in (0, 2):
        clean, rejects = [], []
        report = validate_file(str(p), clean.append, rejects.append, ValidateConfig(workers=workers),
                               json_text=json_text)  # fmt: skip
        if workers and json_text:
            assert all(isinstance(c, str) for c in clean)
            clean = [json.loads(c) for c in clean]
        assert all(isinstance(c, dict) for c in clean)
        results[workers] = (clean, rejects, report.reasons)
    assert results[0] == results[2]
    files = {}
    for workers in (0, 2):  # the front door writes byte-identical files either way
        out, rej = tmp_path / f"c{workers}.jsonl", tmp_path / f"r{workers}.jsonl"
        mghkit.validate_triplets(p, out=out, rejects=rej, workers=workers)
        files[workers] = (out.read_bytes(), rej.read_bytes())
    assert files[0] == files[2] and files[0][1].count(b"\n") == 7
    reasons = results[0][2]
    assert {"unparseable", "too_few_negatives", "duplicate_query", "near_duplicate_query",
            "negative_is_other_positive", "duplicate_id"} <= set(reasons)  # fmt: skip


def test_cli_workers_option_matches_in_process_and_rejects_bad_values(tmp_path):
    p = write(tmp_path / "t.jsonl", _mixed_rows())
    outs = []
    for w in ("0", "2"):
        res = run_cli("validate", str(p), "--out", str(tmp_path / f"c{w}.jsonl"), "--rejects",
                      str(tmp_path / f"r{w}.jsonl"), "--workers", w, "-q")  # fmt: skip
        assert res.returncode == 0, res.stderr
        outs.append(((tmp_path / f"c{w}.jsonl").read_bytes(), (tmp_path / f"r{w}.jsonl").read_bytes()))
    assert outs[0] == outs[1] and outs[0][0].count(b"\n") == 53  # 60 lines, 7 rejects
    res = run_cli("validate", str(p), "--workers", "-1")
    assert res.returncode == 2 and b"--workers" in res.stderr


# ----------------------------------------------------------------------------- the front door
def test_validate_triplets_in_memory_returns_typed_records_rejects_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written
    rows = [
        Triplet.model_validate(make_triplet("  How do  volcanoes form? ", 1)),  # a Triplet object
        make_triplet("how do volcanoes form", 2),  # a dict: duplicate query of record 1
        with_negs(3, ["a1 x", "b2 y", "c3 z"]),
        "not a record",
        make_triplet("why is the sea salty", 5, task_id="task-7", kind="short-long"),
    ]
    rows[2]["id"] = "trip-mine"
    res = mghkit.validate_triplets(rows)
    clean, rejects, report = res  # unpacks as the documented tuple
    assert [type(t) for t in clean] == [Triplet, Triplet]
    assert [t.query for t in clean] == ["How do volcanoes form?", "why is the sea salty"]
    assert clean[1].task_id == "task-7" and clean[0].id == rows[0].id  # ids and provenance kept
    assert [(r.line, r.codes()) for r in rejects] == [
        (2, ["duplicate_query"]),
        (3, ["too_few_negatives"]),
        (4, ["unparseable"]),
    ]
    assert all(r.stage == "validate" and r.file is None for r in rejects)
    assert rejects[1].id == "trip-mine" and rejects[1].record == rows[2] and rejects[1].raw is None
    assert rejects[1].reasons[0].field == "hard_negative_examples" and "3 negatives" in rejects[1].reasons[0].detail
    assert rejects[2].record is None and rejects[2].raw == "'not a record'"
    assert (report.input, report.total, report.clean, report.rejected) == ("<records>", 5, 2, 3)
    assert report.reasons == {"duplicate_query": 1, "too_few_negatives": 1, "unparseable": 1}
    assert res.level_stats is None and list(tmp_path.iterdir()) == []


def test_validate_triplets_through_a_path_in_memory_and_to_files(tmp_path):
    rows = [make_triplet("good one", 1), "{oops", make_triplet("good one", 2), make_triplet("another", 3)]
    p = write(tmp_path / "t.jsonl", rows)
    clean, rejects, report = mghkit.validate_triplets(p)  # a Path; nothing written
    assert [t.query for t in clean] == ["good one", "another"] and all(isinstance(t, Triplet) for t in clean)
    assert [(r.file, r.line, r.codes()) for r in rejects] == [
        (str(p), 2, ["unparseable"]),
        (str(p), 3, ["duplicate_query"]),
    ]
    assert (report.input, report.total, report.clean, report.rejected) == (str(p), 4, 2, 2)
    in_memory = mghkit.validate_triplets([make_triplet("good one", 1), make_triplet("good one", 2)])
    assert in_memory.clean[0] == clean[0]  # the same record whichever way it came in

    out, rej, rep = tmp_path / "c.jsonl", tmp_path / "r.jsonl", tmp_path / "rep.json"
    res = mghkit.validate_triplets(str(p), out=out, rejects=rej, report=rep)
    assert res.clean == [] and res.rejects == []  # streamed to the files, not held
    assert [json.loads(x)["query"] for x in out.read_text().splitlines()] == ["good one", "another"]
    written = [Reject.model_validate_json(x) for x in rej.read_text().splitlines()]
    assert [(r.stage, r.file, r.line, r.codes()) for r in written] == [
        (r.stage, r.file, r.line, r.codes()) for r in rejects
    ]
    assert json.loads(rep.read_text())["reasons"] == {"unparseable": 1, "duplicate_query": 1} == res.report.reasons

    res = mghkit.validate_triplets(str(p), out=tmp_path / "c2.jsonl")  # rejects not written: held
    assert res.clean == [] and [r.line for r in res.rejects] == [2, 3]
    res = mghkit.validate_triplets(str(p), keep=False)  # counts only
    assert (res.clean, res.rejects, res.report.rejected) == ([], [], 2)


def test_validate_triplets_strict_options_and_the_level_check_in_memory(tmp_path):
    rows = [make_triplet("good one", 1), with_negs(2, ["a1 x", "b2 y", "c3 z"])]
    with pytest.raises(InputError, match=r"^<records>:2: hard_negative_examples: 3 negatives, need 4"):
        mghkit.validate_triplets(rows, strict=True)
    with pytest.raises(UsageError, match="thresholds"):
        mghkit.validate_triplets(rows, dedup_threshold=0)
    with pytest.raises(UsageError, match="--plot needs --check-levels"):
        mghkit.validate_triplets(rows, plot=tmp_path / "x.png")
    with pytest.raises(UsageError, match="a list of records"):
        mghkit.validate_triplets(rows[0])
    res = mghkit.validate_triplets([graded(1), graded(2), graded(4, pos_overlap=1)], check_levels=True,
                                   embedder=bow_embed, plot=tmp_path / "l.png")  # fmt: skip
    assert [r.line for r in res.rejects] == [3] and res.rejects[0].codes() == ["negative_outscores_positive"]
    assert res.report.levels is not None and res.report.levels["checked"] == 3
    assert res.level_stats is not None and len(res.level_stats.rows) == 3
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
