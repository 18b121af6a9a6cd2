"""--resume continues exactly: 20 steps straight equal 10 steps + resume 10 (tiny model, LoRA dropout on)."""

from __future__ import annotations

import json

import pytest

from mghkit.errors import UsageError
from mghkit.train.args import make_args
from mghkit.train.loop import train


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_twenty_straight_equals_ten_plus_resumed_ten(tiny_model_dir, curriculum_file, tmp_path):
    common = dict(
        base_model=str(tiny_model_dir), steps=20, batch_size=4, save_every=5, lora_dropout=0.1, lr=1e-3, threads=1
    )
    straight = train(make_args(str(curriculum_file), {**common, "out": str(tmp_path / "a")}))
    assert len(straight.losses) == 20

    first = train(make_args(str(curriculum_file), {**common, "out": str(tmp_path / "b"), "stop_after": 10}))
    assert len(first.losses) == 10 and not (tmp_path / "b" / "adapter").exists()
    second = train(make_args(str(curriculum_file), {**common, "out": str(tmp_path / "b"), "resume": True}))
    assert len(second.losses) == 10

    assert first.losses + second.losses == pytest.approx(straight.losses, rel=1e-5, abs=1e-6)
    assert _losses(tmp_path / "b") == pytest.approx(_losses(tmp_path / "a"), rel=1e-5, abs=1e-6)
    assert len(set(straight.losses)) > 5  # the losses move: the comparison is not between constants


def test_resume_refuses_changed_settings(tiny_model_dir, curriculum_file, tmp_path):
    common = dict(base_model=str(tiny_model_dir), steps=4, batch_size=4, out=str(tmp_path / "r"), threads=1)
    train(make_args(str(curriculum_file), {**common, "stop_after": 2}))
    with pytest.raises(UsageError, match="lr"):
        train(make_args(str(curriculum_file), {**common, "resume": True, "lr": 1e-3}))
    with pytest.raises(UsageError, match="already holds a run"):
        train(make_args(str(curriculum_file), common))


def test_a_run_checkpointed_before_query_tokens_resumes_split(tiny_model_dir, curriculum_file, tmp_path):
    """A checkpoint without ``query_tokens`` trained its queries split: the resumed run keeps that mode
    (in its later checkpoints and its mghkit_model.json); a new run is joint."""
    from mghkit.train import checkpoint

    common = dict(base_model=str(tiny_model_dir), steps=4, batch_size=4, save_every=1, threads=1)
    joint = train(make_args(str(curriculum_file), {**common, "out": str(tmp_path / "new")}))
    assert joint.encoder().config.query_tokens == "joint"
    train(make_args(str(curriculum_file), {**common, "out": str(tmp_path / "old"), "stop_after": 2}))
    state_file = checkpoint.latest(tmp_path / "old") / "state.json"
    state = json.loads(state_file.read_text())
    assert state.pop("query_tokens") == "joint"
    state_file.write_text(json.dumps(state))  # as mghkit wrote it before the field
    train(make_args(str(curriculum_file), {**common, "out": str(tmp_path / "old"), "resume": True}))
    assert json.loads((tmp_path / "old" / "mghkit_model.json").read_text())["query_tokens"] == "split"
    assert checkpoint.read_state(checkpoint.latest(tmp_path / "old"))["query_tokens"] == "split"


def test_a_run_checkpointed_before_sparse_dropout_resumes_only_with_peft_dropout(
    tiny_model_dir, curriculum_file, tmp_path
):
    """A checkpoint without ``sparse_dropout`` trained with peft's dropout: resuming it with the new
    default is refused in one line naming the setting; with ``--no-sparse-dropout`` it continues."""
    from mghkit.train import checkpoint

    common = dict(base_model=str(tiny_model_dir), steps=4, batch_size=4, save_every=1, threads=1,
                  lora_dropout=0.1, out=str(tmp_path / "old"))  # fmt: skip
    train(make_args(str(curriculum_file), {**common, "sparse_dropout": False, "stop_after": 2}))
    state_file = checkpoint.latest(tmp_path / "old") / "state.json"
    state = json.loads(state_file.read_text())
    assert state["args"].pop("sparse_dropout") is False
    state_file.write_text(json.dumps(state))  # as mghkit wrote it before the setting
    with pytest.raises(UsageError, match="changed settings: sparse_dropout"):
        train(make_args(str(curriculum_file), {**common, "resume": True}))
    resumed = train(make_args(str(curriculum_file), {**common, "resume": True, "sparse_dropout": False}))
    assert len(resumed.losses) == 2
