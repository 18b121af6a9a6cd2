"""mghkit.fine_tune: in-memory records to a run dir that is portable, replayable, and leaves the
caller's process as it was (RNG, threads)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import mghkit
from mghkit.errors import InputError, UsageError
from mghkit.model.tiny import save_tiny_model
from mghkit.train.args import make_args
from tests.train.conftest import write_curriculum, write_triplets

FAST = dict(batch_size=2, threads=1, lora_dropout=0.0)
TEXTS = ["salt lamp", "the earth orbits the sun"]


def _records(tmp_path, n=8):
    return [json.loads(line) for line in write_triplets(tmp_path / "t.jsonl", n=n).read_text().splitlines()]


def _no_absolute_paths(run, *roots):
    """No text file of the run dir (checkpoints aside) names an absolute path under ``roots``."""
    for f in run.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".md") and "checkpoints" not in f.parts:
            text = f.read_text(encoding="utf-8")
            for root in roots:
                assert str(root) not in text, f"{f} holds {root}"


def test_records_in_memory_give_a_run_dir_that_moves_with_its_base(tmp_path):
    home = tmp_path / "a"
    base = save_tiny_model(home / "base")
    records = _records(tmp_path)
    torch.manual_seed(123)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()

    result = mghkit.fine_tune(records, base_model=str(base), out=home / "run", steps=4, **FAST)

    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads  # the caller's state
    run = home / "run"
    assert result.out == run and result.steps == result.total_steps == 4 and result.finished
    assert np.isfinite(result.final_loss) and result.final_loss == result.losses[-1]
    stored = [json.loads(line) for line in (run / "training_data.jsonl").read_text().splitlines()]
    assert [r["id"] for r in stored] == [r["id"] for r in records]  # the records became the run's training file
    args = json.loads((run / "training_args.json").read_text())
    assert (args["data"], args["out"], args["base_model"]) == ("./training_data.jsonl", ".", "../base")
    assert json.loads((run / "mghkit_model.json").read_text())["base_model"] == "../base"
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "../base"
    assert (run / "adapter" / "tokenizer.json").is_file()
    _no_absolute_paths(run, tmp_path)

    before = result.encoder().encode(TEXTS)
    untrained = mghkit.load_encoder(str(base)).encode(TEXTS)
    assert np.abs(before - untrained).max() > 1e-6  # the adapter is applied
    shutil.move(str(home), str(tmp_path / "b"))  # the run and its base move together
    after = mghkit.load_encoder(str(tmp_path / "b" / "run")).encode(TEXTS)
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_a_run_on_the_local_base_loads_from_any_folder(tmp_path, monkeypatch):
    """Base ``local`` is stored as the name: a copy of the run dir alone loads elsewhere."""
    monkeypatch.setenv("MGHKIT_CACHE_DIR", str(tmp_path / "cache"))
    save_tiny_model(tmp_path / "cache" / "models" / "smollm2-135m-instruct")  # stands in for the embedded model
    run = tmp_path / "run"
    result = mghkit.fine_tune(_records(tmp_path), out=run, steps=4, progress=False, **FAST)
    assert json.loads((run / "mghkit_model.json").read_text())["base_model"] == "local"
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "local"
    _no_absolute_paths(run, tmp_path)
    want = result.encoder().encode(TEXTS)

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(run)
    np.testing.assert_allclose(mghkit.load_encoder(str(copy)).encode(TEXTS), want, atol=1e-6)


def test_resume_with_records_needs_the_same_records(tiny_model_dir, tmp_path):
    records = _records(tmp_path)
    common = dict(base_model=str(tiny_model_dir), out=tmp_path / "run", steps=4, progress=False, **FAST)
    first = mghkit.fine_tune(records, stop_after=2, **common)
    assert not first.finished and first.steps == 2
    with pytest.raises(UsageError, match="resume it first"):
        first.encoder()
    with pytest.raises(UsageError, match="other examples"):
        mghkit.fine_tune(records[::-1], resume=True, **common)
    second = mghkit.fine_tune(records, resume=True, **common)
    assert second.finished and second.steps == 4 and len(second.losses) == 2


def test_config_replays_a_run_and_explicit_options_win(tiny_model_dir, tmp_path):
    data = write_curriculum(tmp_path / "train.jsonl", per_stage=4)
    a = mghkit.fine_tune(data, base_model=str(tiny_model_dir), out=tmp_path / "a", steps=4, lr=1e-3,
                         lora_dropout=0.1, batch_size=4, threads=1, progress=False)  # fmt: skip
    config = tmp_path / "a" / "training_args.json"

    with pytest.raises(UsageError, match="already holds a run"):  # the config's out is its own run dir
        mghkit.fine_tune(None, config=config)
    b = mghkit.fine_tune(None, config=config, out=tmp_path / "b", progress=False)  # data, model, settings: the file's
    assert b.losses == pytest.approx(a.losses, rel=1e-6)
    replayed = json.loads((tmp_path / "b" / "training_args.json").read_text())
    assert replayed == json.loads(config.read_text())  # a and b are siblings: even the relative paths agree
    assert replayed["data"] == "../train.jsonl"

    args = make_args(None, {"batch_size": 2}, preset="paper", config=config)  # preset < file < explicit
    assert (args.batch_size, args.grad_accum, args.lr, args.lora_dropout) == (2, 1, 1e-3, 0.1)
    assert args.base_model == str(tiny_model_dir) and args.data == str(data)

    own = tmp_path / "own.json"
    own.write_text(json.dumps({"preset": "paper", "lr": 1e-3, "data": "t.jsonl"}))
    args = make_args(None, {}, config=own)
    assert (args.grad_accum, args.lr, args.data, args.preset) == (8, 1e-3, str(tmp_path / "t.jsonl"), "paper")
    assert make_args(None, {"lr": 5e-4}, config=own).lr == 5e-4


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ({"bacth_size": 4}, "unknown training arguments bacth_size"),
        ({"batch_size": "4"}, 'batch_size: expected int, got "4"'),
        ({"lora": 1}, "lora: expected bool"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_a_bad_config_file_is_an_input_error(tmp_path, content, expect):
    path = tmp_path / "training_args.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=expect):
        make_args("t.jsonl", {}, config=path)
    with pytest.raises(UsageError, match="no such file"):
        make_args("t.jsonl", {}, config=tmp_path / "missing.json")


def test_records_of_the_wrong_type_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match=r"examples\[1\]"):
        mghkit.fine_tune([{"query": "q"}, 3], out=tmp_path / "x")
    with pytest.raises(UsageError, match="no training data"):
        mghkit.fine_tune(None, out=tmp_path / "x")
