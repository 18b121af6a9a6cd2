"""The newcomer's path: `python -m mghkit.demo` (what `make demo` runs), end to end at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline(tmp_path):
    out = tmp_path / "demo"
    sizes = ["--tasks", "1", "--per-task", "1", "--steps", "2", "--batch-size", "2", "--max-length", "32",
             "--heldout-queries", "6", "--eval-docs", "12", "--sts-pairs", "12"]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "mghkit.demo", "--out", str(out), *sizes], capture_output=True,
                       timeout=1500)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 1
    assert summary["triplets_generated"] + summary["generate_rejects"] == 1  # nothing silently dropped
    assert summary["triplets_kept"] + summary["validate_rejects"] == summary["triplets_generated"]
    assert summary["public_triplets"] > 500
    assert summary["training_steps"] == 2
    assert set(summary["eval"]) == {"before", "after"}
    for row in summary["eval"].values():
        assert set(row) == {"manpages-heldout", "simlex-subset"}
        assert all(isinstance(v, float) for v in row.values())
    for artefact in ["tasks.jsonl", "triplets.jsonl", "validate-report.json", "levels.png", "train.jsonl",
                     "run/adapter", "run/mghkit_model.json", "pool-inspect.html", "eval.json"]:  # fmt: skip
        assert (out / artefact).exists(), artefact
    assert b"mghkit demo" in r.stderr and b"before" in r.stderr
