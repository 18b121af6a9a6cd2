"""The bad-input battery for the commands that read triplet files (validate, curriculum).

Every case: the right exit code, ONE line on stderr naming file:line(:field) where there is one,
no traceback, and an existing output file left untouched when the command fails. Each case runs
in process (``main()``) and the distinct failure paths also in a real subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_triplet, run_cli, run_main

GOOD = json.dumps(make_triplet("a perfectly fine question", 1))


def three_negatives() -> str:
    rec = make_triplet("three negatives only", 2)
    rec["hard_negative_examples"] = rec["hard_negative_examples"][:3]
    return json.dumps(rec)


def unknown_level() -> str:
    rec = make_triplet("odd level", 3)
    rec["hard_negative_examples"][1]["similarity_level"] = "extreme"
    return json.dumps(rec)


def wrong_types() -> str:
    return json.dumps({**make_triplet("typed", 4), "hard_negative_examples": [{"similarity_level": "high", "text": 5}]})


def missing_fields() -> str:
    rec = make_triplet("no positive", 5)
    del rec["positive_example"]
    return json.dumps(rec)


# name -> (bytes of line 2, validate --strict field/message, curriculum message)
CASES: dict[str, tuple[bytes, str, str]] = {
    "truncated": (GOOD[: len(GOOD) // 2].encode(), ":2: not valid JSON", ":2: not valid JSON"),
    "not_json": (b"this is not json", ":2: not valid JSON", ":2: not valid JSON"),
    "wrong_types": (wrong_types().encode(), ":2: hard_negative_examples.0.text:", ":2: hard_negative_examples.0.text:"),
    "missing_fields": (missing_fields().encode(), ":2: positive_example: missing field", ":2: positive_example: missing field"),
    "three_negatives": (three_negatives().encode(), ":2: hard_negative_examples: 3 negatives, need 4", ""),
    "unknown_level": (unknown_level().encode(), ":2: hard_negative_examples.1.similarity_level:", ":2: hard_negative_examples.1.similarity_level: unknown level 'extreme'"),
    "binary": (b"\x00\xff\xfe\x89PNG\x1a garbage \xc3\x28", ":2: not valid UTF-8", ":2: not valid UTF-8"),
}  # fmt: skip


def make_input(tmp_path: Path, line2: bytes) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_bytes(GOOD.encode() + b"\n" + line2 + b"\n")
    return p


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    """A file whose second line is a 100 MB JSON object (written in 1 MB blocks)."""
    p = tmp_path_factory.mktemp("huge") / "huge.jsonl"
    with p.open("wb") as fp:
        fp.write(GOOD.encode() + b'\n{"query": "')
        block = b"x" * (1 << 20)
        for _ in range(100):
            fp.write(block)
        fp.write(b'", "positive_example": "p", "hard_negative_examples": []}\n')
    return p


def one_line(err: bytes | str) -> str:
    text = err.decode() if isinstance(err, bytes) else err
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def prior_output(tmp_path: Path) -> Path:
    out = tmp_path / "out.jsonl"
    out.write_text('{"earlier": "output"}\n')
    return out


# ----------------------------------------------------------------------------- validate
@pytest.mark.parametrize("case", list(CASES))
def test_validate_rejects_bad_line_and_keeps_the_good_one(tmp_path, capfd, case):
    p = make_input(tmp_path, CASES[case][0])
    out, rej = tmp_path / "clean.jsonl", tmp_path / "rej.jsonl"
    assert run_main("validate", str(p), "--out", str(out), "--rejects", str(rej), "-q") == 0
    assert capfd.readouterr().err == ""
    assert [json.loads(x)["query"] for x in out.read_text().splitlines()] == ["a perfectly fine question"]
    (reject,) = [json.loads(x) for x in rej.read_text().splitlines()]
    assert reject["line"] == 2 and reject["reasons"]


@pytest.mark.parametrize("case", list(CASES))
def test_validate_strict_fails_with_file_line_field(tmp_path, capfd, case):
    p = make_input(tmp_path, CASES[case][0])
    out = prior_output(tmp_path)
    assert run_main("validate", str(p), "--out", str(out), "--strict") == 2
    line = one_line(capfd.readouterr().err)
    assert line.startswith("mghkit: error: ") and f"{p}{CASES[case][1]}" in line
    assert out.read_text() == '{"earlier": "output"}\n'


@pytest.mark.parametrize("case", list(CASES))
def test_curriculum_fails_with_file_line_field(tmp_path, capfd, case):
    p = make_input(tmp_path, CASES[case][0])
    out = prior_output(tmp_path)
    code = run_main("curriculum", str(p), "--out", str(out))
    err = capfd.readouterr().err
    if case == "three_negatives":  # the documented missing-level rule: skip that level, say so
        assert code == 0 and "records missing a level: low 1" in err
        assert len(out.read_text().splitlines()) == 7
        assert run_main("curriculum", str(p), "--out", str(out), "--missing", "error") == 2
        assert f"{p}:2: hard_negative_examples: no low negative" in one_line(capfd.readouterr().err)
        return
    assert code == 2
    assert f"{p}{CASES[case][2]}" in one_line(err)
    assert out.read_text() == '{"earlier": "output"}\n'


@pytest.mark.parametrize("command", ["validate", "curriculum"])
def test_empty_file_gives_empty_valid_output(tmp_path, capfd, command):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    assert run_main(command, str(p), "--out", str(out)) == 0
    assert out.read_bytes() == b""
    assert "0 records" in " ".join(capfd.readouterr().err.split())


@pytest.mark.parametrize("command", ["validate", "curriculum"])
def test_missing_file(tmp_path, capfd, command):
    assert run_main(command, str(tmp_path / "nope.jsonl")) == 2
    assert one_line(capfd.readouterr().err) == f"mghkit: error: {tmp_path / 'nope.jsonl'}: no such file"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["validate", "IN", "--dedup-threshold", "abc"], "Invalid value for '--dedup-threshold'"),
        (["validate", "IN", "--dedup-threshold", "1.5"], "thresholds must be in (0, 1]"),
        (["validate", "IN", "--min-chars", "10", "--max-chars", "5"], "--min-chars"),
        (["validate", "IN", "--check-levels", "--embedder", "bogus"], "--embedder 'bogus'"),
        (["validate", "IN", "--out", "OUT", "--rejects", "OUT"], "same as --out"),
        (["curriculum", "IN", "--schedule", "sideways"], "valid: coarse-to-fine, fine-to-coarse, random, fixed:high"),
        (["curriculum", "IN", "--missing", "ignore"], "valid: skip, drop, error"),
        (["curriculum", "IN", "--stages", "9"], "--stages 9"),
        (["curriculum", "IN", "--stage-size", "0"], "--stage-size 0"),
    ],
)
def test_unknown_option_values(tmp_path, capfd, args, needle):
    p = make_input(tmp_path, GOOD.replace("fine", "other").encode())
    out = prior_output(tmp_path)
    args = [str(p) if a == "IN" else str(out) if a == "OUT" else a for a in args]
    assert run_main(*args) == 2
    assert needle in one_line(capfd.readouterr().err)
    assert out.read_text() == '{"earlier": "output"}\n'


def test_100mb_line_validate_rejects_it_and_strict_stops(huge, tmp_path, capfd):
    out, rej = tmp_path / "clean.jsonl", tmp_path / "rej.jsonl"
    assert run_main("validate", str(huge), "--out", str(out), "--rejects", str(rej), "-q") == 0
    assert len(out.read_text().splitlines()) == 1
    reject = json.loads(rej.read_text())
    assert reject["line"] == 2 and "over the" in reject["reasons"][0]["detail"] and rej.stat().st_size < 10_000
    assert run_main("validate", str(huge), "--out", str(out), "--strict") == 2
    assert f"{huge}:2: line is 104,857," in one_line(capfd.readouterr().err)
    assert len(out.read_text().splitlines()) == 1  # the earlier clean output is still there


def test_100mb_line_curriculum(huge, tmp_path, capfd):
    assert run_main("curriculum", str(huge), "--out", str(tmp_path / "o.jsonl")) == 2
    assert f"{huge}:2: line is 104,857," in one_line(capfd.readouterr().err)


# ----------------------------------------------------------------------------- real subprocesses
@pytest.mark.parametrize("case", ["truncated", "binary", "unknown_level"])
def test_subprocess_validate_strict_and_curriculum(tmp_path, case):
    p = make_input(tmp_path, CASES[case][0])
    out = prior_output(tmp_path)
    for command, extra, needle in [("validate", ["--strict"], CASES[case][1]), ("curriculum", [], CASES[case][2])]:
        r = run_cli(command, str(p), "--out", str(out), *extra)
        assert r.returncode == 2, r.stderr
        assert f"{p}{needle}" in one_line(r.stderr)
        assert out.read_text() == '{"earlier": "output"}\n'
        assert r.stdout == b""


def test_subprocess_100mb_line_missing_file_and_bad_option(huge, tmp_path):
    r = run_cli("validate", str(huge), "--out", "-", "-q")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1  # the good line made it out
    r = run_cli("curriculum", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "no such file" in one_line(r.stderr)
    r = run_cli("curriculum", str(huge), "--schedule", "fixed:hgih")
    assert r.returncode == 2 and "unknown schedule 'fixed:hgih'" in one_line(r.stderr)


def test_subprocess_stdout_output_stays_valid_jsonl_when_strict_stops(tmp_path):
    queries = ["why is the sky blue", "how do magnets work", "what is a prime number"]
    rows = [json.dumps(make_triplet(q, i)) for i, q in enumerate(queries)]
    data = ("\n".join(rows) + "\n{broken\n" + json.dumps(make_triplet("after", 9)) + "\n").encode()
    r = run_cli("validate", "-", "--out", "-", "--strict", stdin=data)
    assert r.returncode == 2 and "<stdin>:4: not valid JSON" in one_line(r.stderr)
    assert [json.loads(x)["query"] for x in r.stdout.splitlines()] == queries


# ----------------------------------------------------------------------------- generate --batch, --deployments
def _deployments(tmp_path: Path, params: dict, top: dict | None = None) -> Path:
    p = tmp_path / "deployments.json"
    p.write_text(json.dumps({"model_list": [{"model_name": "big", "litellm_params": params}], **(top or {})}))
    return p


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "ollama/llama3", "--batch"], "--batch: ollama/llama3 has no batch API"),
        (["--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "--batch", "--batch-size", "50001"], "over the provider's limit of 50,000 requests"),
        (["--model", "big", "--deployments", "DEP:unknown-param"], "litellm_params.region: unknown key"),
        (["--model", "big", "--deployments", "DEP:unknown-top"], "deployments.json: retries: unknown key"),
        (["--model", "big", "--deployments", "DEP:literal-key"], "a key is never written in the file"),
        (["--model", "big", "--deployments", "DEP:no-batch", "--batch"], "--batch: ollama/x has no batch API"),
    ],
    ids=["model-without-batch", "batch-size-over-limit", "deployments-unknown-key", "deployments-unknown-top",
         "deployments-literal-key", "deployment-without-batch"],
)  # fmt: skip
def test_generate_batch_and_deployments_bad_input(tmp_path, capfd, extra, needle):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"kind": "sts", "task": "Find facts."}\n')
    out = prior_output(tmp_path)
    kinds = {
        "unknown-param": ({"model": "openai/x", "region": "eu"}, None),
        "unknown-top": ({"model": "openai/x"}, {"retries": 3}),
        "literal-key": ({"model": "openai/x", "api_key": "sk-written-in-the-file"}, None),
        "no-batch": ({"model": "ollama/x"}, None),
    }
    args = []
    for a in extra:
        if a.startswith("DEP:"):
            params, top = kinds[a[4:]]
            a = str(_deployments(tmp_path, params, top))
        args.append(a)
    code = run_main("generate", str(tasks), "--out", str(out), "--cache-dir", str(tmp_path / "c"), *args)
    assert code == 2
    assert needle in one_line(capfd.readouterr().err)
    assert out.read_text() == '{"earlier": "output"}\n'
    assert not (tmp_path / "c" / "batches.sqlite3").exists()  # nothing was submitted, nor recorded


# ----------------------------------------------------------------------------- ablate
def heldout_beir(tmp_path: Path, query: str) -> Path:
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": "a document"}) + "\n")
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": query}) + "\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return d


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--schedules", "sideways"], "--schedules: unknown schedule 'sideways'; valid: coarse-to-fine"),
        (["--poolings", "max"], "--poolings: unknown pooling 'max'; valid: ata, mean, last, weighted-mean"),
        (["--seeds", "3", "--max-cells", "10"], "more than --max-cells 10"),
        (["--poolings", "ata"], "--poolings ata: "),  # the default base is an encoder: ATA is for decoders
        (["--train-option", "bogus=1"], "--train-option 'bogus=1': expected KEY=VALUE"),
        (["--train-option", "lora_dropout=1.5"], "--lora-dropout must be in [0, 1)"),
        (["--grid", "coarse-to-fine"], "--grid 'coarse-to-fine': expected 'SCHEDULES x POOLINGS'"),
        (["LEAK"], "is also the training query of"),
        (["--steps", "2", "--batch-size", "1"], "--steps 2 is fewer than the 4 stages"),  # checked per schedule
    ],
)
def test_ablate_refuses_before_training(tmp_path, capfd, args, needle):
    p = make_input(tmp_path, GOOD.replace("fine", "other").encode())
    query = "leaked" if "LEAK" not in args else json.loads(GOOD)["query"].upper()  # case-folded match
    beir = heldout_beir(tmp_path, query)
    out = tmp_path / "abl"
    args = [a for a in args if a != "LEAK"]
    assert run_main("ablate", str(p), "--eval-beir", str(beir), "--out", str(out), *args) == 2
    assert needle in one_line(capfd.readouterr().err)
    assert not (out / "cells").exists()  # nothing trained


# ----------------------------------------------------------------------------- mine
def _mine_files(tmp_path: Path, pair2: dict, n_docs: int = 40) -> tuple[Path, Path]:
    docs = [f"document {i} " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(12)) for i in range(n_docs)]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "w1 w2", "positive": docs[0]}) + "\n" + json.dumps(pair2) + "\n")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": d}) + "\n" for i, d in enumerate(docs)))
    return pairs, corpus


MINE_CASES = {
    "no_positive": ({"query": "w3"}, [], ":2: positive: expected a non-empty string"),
    "positive_not_in_corpus": ({"query": "w3", "positive": "a text nowhere"}, [], ":2: positive: the positive is not in the corpus"),
    "corpus_too_small": ({"query": "w3", "positive": "document 1 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18"},
                         ["--margin", "0"], "too small"),
    "embedder_offline": ({"query": "w3", "positive": "document 1 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18"},
                         ["--retriever", "dense", "--embedder", "nobody/not-cached-anywhere"], "cannot be loaded offline"),
    "bad_bands": ({"query": "w3", "positive": "document 1 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18"},
                  ["--bands", "high=9-2"], "bad band high: 9-2"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MINE_CASES))
def test_mine_bad_input_one_line_exit_2_output_kept(tmp_path, capfd, case):
    pair2, extra, needle = MINE_CASES[case]
    pairs, corpus = _mine_files(tmp_path, pair2, n_docs=4 if case == "corpus_too_small" else 40)
    out = prior_output(tmp_path)
    assert run_main("mine", str(pairs), "--corpus", str(corpus), "--out", str(out), *extra) == 2
    err = one_line(capfd.readouterr().err)
    assert needle in err and (not needle.startswith(":") or f"{pairs}{needle}" in err), err
    assert out.read_text() == '{"earlier": "output"}\n'


def test_subprocess_mine_bad_input(tmp_path):
    for case in ("no_positive", "embedder_offline"):
        pair2, extra, needle = MINE_CASES[case]
        pairs, corpus = _mine_files(tmp_path, pair2)
        r = run_cli("mine", str(pairs), "--corpus", str(corpus), "--out", "-", *extra)
        assert r.returncode == 2 and needle in one_line(r.stderr) and r.stdout == b"", r.stderr
