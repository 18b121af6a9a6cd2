"""`mghkit train` through the real CLI: help, bad files, a tiny run's run dir, torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from tests.train.conftest import write_curriculum

FAST = ["--threads", "1", "--lora-dropout", "0"]


def test_help_lists_the_training_options():
    r = run_cli("train", "--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for option in ("--schedule", "--pooling", "--max-length", "--steps", "--epochs", "--batch-size", "--grad-accum",
                   "--grad-cache", "--lr", "--temperature", "--quantize", "--resume", "--preset", "--base-model"):  # fmt: skip
        assert option in out, option


def _check_fails_before_torch(args: list[str]) -> str:
    """Run the CLI in a fresh interpreter; it must exit 2 with one line and never import torch."""
    code = (
        f"import sys\nsys.argv = ['mghkit', *{args!r}]\nfrom mghkit.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 2, e.code\nelse:\n    raise AssertionError('no exit')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_bad_line_deep_in_the_file_fails_with_exit_2_before_any_model(tmp_path):
    path = write_curriculum(tmp_path / "train.jsonl", per_stage=500)
    with path.open("a") as fp:
        fp.write(
            json.dumps({"id": "x", "stage": 4, "level": "high", "query": "q", "positive": 7, "negative": "n"}) + "\n"
        )
    err = _check_fails_before_torch(["train", str(path), "--out", str(tmp_path / "run")])
    assert f"{path}:2001: positive:" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("lines", "extra", "expect"),
    [
        (['{"query": "q", "positive": "p", "negative": "n", "id": "a", "stage": 1, "level": "low"}', "{oops"], [], ":2: not valid JSON"),
        (['{"query": "q", "positive": "p"}'], [], ":1: neither a curriculum example"),
        (['{"query": "q", "positive": " ", "negative": "n", "id": "a", "stage": 1, "level": "low"}'], [], ":1: positive: empty text"),
        ([], [], "no training records"),
        (['{"query": "q", "positive": "p", "negative": "n", "id": "a", "stage": 1, "level": "low"}'], ["--batch-size", "4"], "fewer than one step"),
        (['{"query": "q", "positive": "p", "negative": "n", "id": "a", "stage": 1, "level": "low"}'], ["--schedule", "hardest-first"], "unknown schedule"),
        (['{"query": "q", "positive": "p", "negative": "n", "id": "a", "stage": 1, "level": "low"}'], ["--quantize", "3bit"], "3bit"),
        (['{"query": "q", "positive": "p", "negative": "n", "id": "a", "stage": 1, "level": "low"}'], ["--steps", "2", "--epochs", "1"], "not both"),
        ([f'{{"query": "q", "positive": "p", "negative": "n", "id": "{i}", "stage": {i}, "level": "low"}}' for i in (1, 2, 3, 4)], ["--steps", "3", "--batch-size", "1"], "--steps 3 is fewer than the 4 stages"),
    ],
)  # fmt: skip
def test_bad_input_and_usage_is_one_line_exit_2(tmp_path, lines, extra, expect):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    err = _check_fails_before_torch(["train", str(path), "--out", str(tmp_path / "run"), *extra])
    assert expect in err


def test_missing_file_is_exit_2(tmp_path):
    assert "no such file" in _check_fails_before_torch(["train", str(tmp_path / "nope.jsonl")])


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_tiny_run_dir_is_a_model_and_torchrun_gives_the_same_losses(tiny_model_dir, tmp_path):
    """One process at batch 4 and two gloo processes at batch 2 each train on the same global
    batches: the losses agree, and the run dir holds everything a model needs."""
    data = write_curriculum(tmp_path / "train.jsonl", per_stage=8)
    single = tmp_path / "single"
    r = run_cli("train", str(data), "--base-model", str(tiny_model_dir), "--steps", "4", "--batch-size", "4",
                "--out", str(single), *FAST)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert r.stdout == b""  # messages go to stderr
    for name in ("adapter/adapter_config.json", "mghkit_model.json", "training_args.json", "metrics.jsonl",
                 "loss.png", "lineage.json"):  # fmt: skip
        assert (single / name).is_file(), name
    lineage = json.loads((single / "lineage.json").read_text())
    assert lineage["input_sha256"] and lineage["examples_per_stage"] == {"1": 8, "2": 8, "3": 8, "4": 8}
    rows = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert [row["stage"] for row in rows] == [1, 2, 3, 4]  # stage by stage, in file order
    assert {"loss", "lr", "tokens_per_s", "examples_per_s"} <= rows[0].keys()
    assert (single / "loss.png").read_bytes()[:4] == b"\x89PNG"
    model_config = json.loads((single / "mghkit_model.json").read_text())
    assert model_config["bidirectional"] is True
    assert model_config["base_model"] == os.path.relpath(tiny_model_dir, single)  # relative to the run dir
    assert (single / model_config["base_model"]).resolve() == tiny_model_dir.resolve()
    assert (single / "adapter" / "tokenizer.json").is_file()  # the tokenizer travels with the run

    from mghkit.model.encoder import load_encoder

    trained, base = load_encoder(str(single)), load_encoder(str(tiny_model_dir))
    assert trained.config.max_length == 256
    assert np.abs(trained.encode(["salt lamp"]) - base.encode(["salt lamp"])).max() > 1e-6  # the adapter is applied

    # the same run replayed from its training_args.json (data, base model, steps...), with 2 processes at
    # batch 2 each: the explicit --batch-size wins over the file's 4
    double = tmp_path / "double"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mghkit",
         "train", "--config", str(single / "training_args.json"), "--batch-size", "2", "--out", str(double)],
        capture_output=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    replayed = json.loads((double / "training_args.json").read_text())
    assert (replayed["world_size"], replayed["batch_size"], replayed["steps"]) == (2, 2, 4)
    assert _losses(double) == pytest.approx(_losses(single), rel=1e-4, abs=1e-5)


def test_help_defaults_come_from_the_training_arguments():
    from mghkit.train.args import FIELDS, describe_default

    text = " ".join(run_cli("train", "--help").stdout.decode().split())
    shown = [name for name in FIELDS if f"[default: {describe_default(name)}]" in text]
    assert {"batch_size", "lora_r", "temperature", "warmup_steps", "max_length", "seed", "out"} <= set(shown)
    assert "[default: 8; paper: 64]" in text  # batch size, read from TrainArgs and the paper preset


def test_replaying_into_the_same_run_dir_is_refused_before_torch(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000001").mkdir(parents=True)  # a run that got somewhere (else it may start over)
    (run / "training_args.json").write_text(json.dumps({"data": "../train.jsonl", "out": ".", "batch_size": 4}))
    write_curriculum(tmp_path / "train.jsonl")
    assert "already holds a run" in _check_fails_before_torch(["train", "--config", str(run / "training_args.json")])
    assert "unknown training arguments nope" in _check_fails_before_torch(
        ["train", "--config", _write(tmp_path / "bad.json", {"nope": 1})]
    )


def _write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)
