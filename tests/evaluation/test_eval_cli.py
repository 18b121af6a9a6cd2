"""`mghkit eval` in a real subprocess: exit codes and one-line errors, the JSON report, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import write_beir


def one_line_error(proc) -> str:
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (lambda p: ["--beir", str(p / "missing")], "missing: no such directory"),
        (
            lambda p: ["--beir", str(write_beir(p / "b", qrels=[("q1", "d1", 1), ("q9", "d1", 1)]))],
            "qrels/test.tsv:3: query-id: unknown query id 'q9'",
        ),
        (lambda p: ["--sts", str(p / "nope.jsonl")], "nope.jsonl: no such file"),
        (lambda p: ["--sts", str(p / "s.jsonl")], "s.jsonl:2: score: missing field"),
        (lambda p: ["--beir", str(write_beir(p / "b")), "--out", str(p / "no" / "r.json")], "folder"),
        (lambda p: ["--pooling", "max"], "unknown pooling 'max'"),
        (lambda p: ["--baseline", "tfidf"], "unknown baseline 'tfidf'"),
        (lambda p: ["--model", str(p / "no-such-model")], "no-such-model: no such model dir"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path: Path, make_args, expected: str) -> None:
    (tmp_path / "s.jsonl").write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "a", "sentence2": "b"}\n'
    )
    proc = cli("eval", "--model", "minilm", *make_args(tmp_path), env={"MGHKIT_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line.startswith("mghkit: error: ") and expected in line, line


def test_unfetchable_mteb_task_fails_with_one_line_naming_it(cli, tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "MGHKIT_CACHE_DIR": str(tmp_path / "c")}  # fmt: skip
    proc = cli("eval", "--model", "minilm", "--tasks", "SciFact", env=env)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "MTEB task SciFact" in line and "could not be fetched" in line


def test_json_report_on_stdout_and_table_on_stderr(cli, tmp_path: Path, beir_dir: Path, sts_file: Path) -> None:
    proc = cli("eval", "--model", "minilm", "--beir", str(beir_dir), "--sts", str(sts_file), "--baseline", "bm25",
               "--seed", "3", "--max-length", "64", "--no-cache", "--threads", "1", "--out", "-",
               env={"MGHKIT_CACHE_DIR": str(tmp_path / "c")})  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "main scores" in err and "minilm" in err and "bm25" in err and "nDCG@10" in err
    report = json.loads(proc.stdout)  # stdout holds the report and nothing else
    assert {"mteb", "transformers", "torch"} <= set(report["versions"])
    assert report["settings"]["seed"] == 3 and report["settings"]["max_length"] == 64
    assert report["settings"]["torch_threads"] == 1  # --threads, set up by the CLI, recorded by the library
    assert report["settings"]["cache_file"] is None and not (tmp_path / "c" / "eval").exists()  # --no-cache
    assert [t["name"] for t in report["tasks"]] == ["toy-beir", "toy-sts"]
    minilm, bm25 = report["rows"]
    assert minilm["dtype"] == "float32" and minilm["max_length"] == 64
    scores = minilm["results"]["toy-beir"]["scores"]["test"][0]
    assert {"ndcg_at_10", "map_at_100", "mrr_at_10", "recall_at_1000", "precision_at_1"} <= set(scores)
    assert scores["main_score"] == minilm["results"]["toy-beir"]["main_score"] == scores["ndcg_at_10"]
    sts = minilm["results"]["toy-sts"]["scores"]["test"][0]
    assert sts["main_score"] == sts["cosine_spearman"] and "cosine_pearson" in sts
    assert list(bm25["results"]) == ["toy-beir"]


@pytest.mark.slow
def test_bundled_suite_subset_on_local(cli, tmp_path: Path) -> None:
    """No model and no task option: the embedded decoder on a subset of the bundled real data."""
    out = tmp_path / "r.json"
    proc = cli("eval", "--pooling", "mean,ata", "--max-queries", "6", "--max-docs", "12", "--max-pairs", "12",
               "--max-length", "96", "--threads", "1", "--no-cache", "--out", str(out))  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "using `local`" in err and "bundled suite" in err
    report = json.loads(out.read_text())
    assert [t["name"] for t in report["tasks"]] == ["manpages-retrieval", "simlex999-sts"]
    assert report["tasks"][0]["size"] == "6 queries, 12 docs"
    assert [r["label"] for r in report["rows"]] == ["local [mean]", "local [ata]"]
    for r in report["rows"]:
        assert 0.0 < r["results"]["manpages-retrieval"]["main_score"] <= 1.0
        assert -1.0 <= r["results"]["simlex999-sts"]["main_score"] <= 1.0
