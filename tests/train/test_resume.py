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
