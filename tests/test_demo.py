"""The newcomer's path: `python -m mghkit.demo` (what `make demo` runs), end to end at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline(tmp_path):
    out = tmp_path / "demo"
    sizes = ["--tasks", "1", "--per-task", "1", "--steps", "4", "--batch-size", "2", "--max-length", "32",
             "--heldout-queries", "6", "--eval-docs", "12", "--sts-pairs", "12"]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "mghkit.demo", "--out", str(out), *sizes], capture_output=True,
                       timeout=1500)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 1
    assert summary["triplets_generated"] + summary["generate_rejects"] == 1  # nothing silently dropped
    assert summary["triplets_kept"] + summary["validate_rejects"] == summary["triplets_generated"]
    assert summary["public_triplets"] > 500
    assert summary["training_steps"] == 4
    assert set(summary["eval"]) == {"before", "after"}
    for row in summary["eval"].values():
        assert set(row) == {"manpages-heldout", "simlex-subset"}
        assert all(isinstance(v, float) for v in row.values())
    for artefact in ["tasks.jsonl", "triplets.jsonl", "validate-report.json", "levels.png", "train.jsonl",
                     "run/adapter", "run/mghkit_model.json", "pool-inspect.html", "eval.json"]:  # fmt: skip
        assert (out / artefact).exists(), artefact
    assert b"mghkit demo" in r.stderr and b"before" in r.stderr


def test_reject_reasons_are_read_from_the_one_reject_shape(tmp_path):
    from mghkit.demo import _reject_reasons
    from mghkit.jsonl import write_jsonl
    from mghkit.schema import Reject, RejectReason

    generate = [Reject(stage="generate", reasons=[RejectReason(code="bad_json"), RejectReason(code="schema")])]
    validate = [Reject(stage="validate", id=f"t{i}", reasons=[RejectReason(code="duplicate_query", field="query")])
                for i in range(3)]  # fmt: skip
    write_jsonl(tmp_path / "g.jsonl", generate)
    write_jsonl(tmp_path / "v.jsonl", validate)
    got = _reject_reasons(tmp_path / "g.jsonl", tmp_path / "v.jsonl", tmp_path / "missing.jsonl")
    assert got == "duplicate_query 3, bad_json 1, schema 1"
    assert _reject_reasons(tmp_path / "missing.jsonl") == "-"


def test_the_public_split_keeps_held_out_documents_out_of_training():
    from mghkit.demo import manpages_split, split_queries

    split = manpages_split(seed=0, max_test=24)
    assert len(split.test_qids) == 24 and split.held_docs
    assert {p["id"] for p in split.train_pairs}.isdisjoint(split.test_qids)
    assert not split.held_docs & {d["_id"] for d in split.train_corpus}
    qids = [f"q{i}" for i in range(50)]
    train, test = split_queries(qids, 0.5, seed=1)
    assert (set(train), set(test)) == tuple(set(x) for x in split_queries(qids[::-1], 0.5, seed=1))  # order-free
