"""Training speed: length-grouped micro-batches (same loss for a fixed batch, less padding, the
curriculum kept), reporters (tensorboard event files read back), --compile equal to the plain
path, --liger on CPU the plain path (refused in one line on CUDA without the package), --packing
the padded losses with less padding."""

from __future__ import annotations

import json
import random

import pytest
import torch

import mghkit
from mghkit.errors import UsageError
from mghkit.schema import Example
from mghkit.train.args import TrainArgs
from mghkit.train.data import group_by_length, padding_fraction, plan_steps, stage_runs
from tests.train.conftest import WORDS

FAST = dict(batch_size=2, threads=1, lora_dropout=0.0, save_every=100)


def _examples(per_stage: int = 8, stages: int = 2, seed: int = 0) -> list[Example]:
    """Curriculum examples whose documents range from 2 to 60 words (real data is not fixed-length)."""
    rng = random.Random(seed)
    out = []
    for stage in range(1, stages + 1):
        for i in range(per_stage):
            out.append(Example(id=f"e{stage}-{i}", stage=stage, level="low", instruction="Retrieve the page",
                               query=" ".join(rng.choices(WORDS, k=rng.randint(2, 8))),
                               positive=" ".join(rng.choices(WORDS, k=rng.randint(2, 60))),
                               negative=" ".join(rng.choices(WORDS, k=rng.randint(2, 60)))))  # fmt: skip
    return out


def _write(path, examples):
    path.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    return path


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- grouping
def test_grouping_keeps_every_stage_and_its_examples_and_cuts_padding():
    ex = _examples(per_stage=40, stages=3)
    grouped = group_by_length(ex, 4, seed=0)
    assert [e.stage for e in grouped] == [e.stage for e in ex]  # the curriculum order of stages is kept
    for run_a, run_b in zip(stage_runs(ex), stage_runs(grouped), strict=True):
        assert sorted(ex[i].id for i in run_a) == sorted(grouped[i].id for i in run_b)  # same examples per stage
    words = lambda t: len(t.split())  # noqa: E731
    before = padding_fraction(ex, range(len(ex)), 4, words)
    after = padding_fraction(grouped, range(len(grouped)), 4, words, sort_documents=True)
    assert padding_fraction(grouped, range(len(grouped)), 4, words) < before  # grouping alone helps too
    assert after < before / 2, (before, after)
    assert group_by_length(ex, 4, seed=0) == grouped  # deterministic for a seed
    assert [e.id for e in group_by_length(ex, 4, seed=1)] != [e.id for e in grouped]  # the batch order is seeded
    plan = plan_steps(grouped, 8)
    assert all(len(set(s.indices)) == 8 for s in plan)  # every step still has distinct examples


def test_in_batch_loss_is_the_same_for_a_fixed_batch_whatever_the_grouping(tiny_model_dir):
    """A step's contrastive batch (GradCache: the whole step) gives the same loss and gradients when
    its micro-batches are length-grouped: InfoNCE does not depend on the order of the batch, and an
    embedding does not depend on the padding around it. Grouping only changes WHICH examples
    share a batch, not the loss of a batch."""
    from mghkit.model.encoder import load_encoder
    from mghkit.train.loop import Batcher
    from mghkit.train.loss import info_nce

    enc = load_encoder(str(tiny_model_dir), pooling="mean", dtype="float32")
    plain, grouping = Batcher(enc), Batcher(enc, sort_documents=True)
    step = _examples(per_stage=8, stages=1)

    def loss_and_grad(order, batcher):
        enc.model.zero_grad()
        parts, padded = [], 0
        for k in range(0, len(order), 2):
            parts.append(batcher([step[i] for i in order[k : k + 2]]))
            padded += batcher.last_padded
        q, p, n = (torch.cat([part[j] for part in parts]) for j in range(3))
        loss = info_nce(q, p, n, temperature=0.05)
        loss.backward()
        grads = torch.cat([w.grad.flatten() for w in enc.model.parameters() if w.grad is not None])
        return loss.item(), grads, padded

    grouped_ids = [e.id for e in group_by_length(step, 2)]
    grouped = [next(i for i, e in enumerate(step) if e.id == g) for g in grouped_ids]
    loss_a, grad_a, padded_a = loss_and_grad(list(range(8)), plain)
    loss_b, grad_b, padded_b = loss_and_grad(grouped, grouping)
    assert padded_b < padded_a  # the grouping did change the micro-batches (and their padding)
    assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6)
    assert torch.allclose(grad_a, grad_b, rtol=1e-4, atol=1e-6)


def test_metrics_record_padding_and_grouping_lowers_it(tmp_path, tiny_model_dir):
    data = _write(tmp_path / "train.jsonl", _examples(per_stage=8, stages=2))
    padding = {}
    for on in (False, True):
        run = tmp_path / f"run-{on}"
        mghkit.fine_tune(data, base_model=str(tiny_model_dir), out=run, group_by_length=on, progress=False, **FAST)
        rows = _rows(run)
        assert [r["stage"] for r in rows] == [1] * 4 + [2] * 4  # the curriculum order either way
        assert all(0 <= r["padding"] < 1 for r in rows)
        padding[on] = sum(r["padding"] for r in rows) / len(rows)
    assert padding[True] < padding[False], padding
    args = json.loads((tmp_path / "run-True" / "training_args.json").read_text())
    assert args["group_by_length"] is True and args["report_to"] == "none"


# ----------------------------------------------------------------------------- reporters
def test_tensorboard_events_hold_what_metrics_jsonl_holds(tmp_path, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = _write(tmp_path / "train.jsonl", _examples(per_stage=4, stages=2))
    run = tmp_path / "run"
    mghkit.fine_tune(data, base_model=str(tiny_model_dir), out=run, report_to="tensorboard", progress=False, **FAST)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = _rows(run)
    assert {"train/loss", "train/learning_rate", "train/tokens_per_s", "train/stage"} <= set(events.Tags()["scalars"])
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in rows], rel=1e-5)
    assert [e.value for e in events.Scalars("train/stage")] == [1, 1, 2, 2]
    assert [e.value for e in events.Scalars("train/learning_rate")] == pytest.approx([r["lr"] for r in rows])


def test_unknown_or_missing_reporters_are_refused_in_one_line():
    with pytest.raises(UsageError, match="unknown --report-to 'wandb'"):
        TrainArgs("t.jsonl", report_to="wandb").check()
    try:
        import trackio  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="trackio package is not installed"):
            TrainArgs("t.jsonl", report_to="trackio").check()


# ----------------------------------------------------------------------------- kernels
def test_liger_falls_back_to_the_plain_path_on_cpu_with_one_warning(tmp_path, tiny_model_dir, caplog):
    """On CPU ``--liger`` trains exactly as without it (Triton kernels need CUDA) and says so once."""
    data = _write(tmp_path / "train.jsonl", _examples(per_stage=4, stages=1))
    losses = {}
    for liger in (False, True):
        run = tmp_path / f"run-{liger}"
        with caplog.at_level("WARNING", logger="mghkit.train.speed"):
            mghkit.fine_tune(data, base_model=str(tiny_model_dir), out=run, liger=liger, progress=False, **FAST)
        losses[liger] = [r["loss"] for r in _rows(run)]
        recorded = json.loads((run / "training_args.json").read_text())
        assert recorded["liger"] is liger and recorded["liger_used"] is False
    assert losses[True] == losses[False]
    warnings = [r.getMessage() for r in caplog.records if "--liger" in r.getMessage()]
    assert len(warnings) == 1 and "plain PyTorch path" in warnings[0] and "cpu" in warnings[0]


def test_liger_on_cuda_without_the_package_is_refused_in_one_line():
    from importlib.util import find_spec

    if find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    with pytest.raises(UsageError) as e:
        TrainArgs("t.jsonl", liger=True, device="cuda").check()
    assert "\n" not in str(e.value) and "liger-kernel package is not installed" in str(e.value)


# ----------------------------------------------------------------------------- packing
def test_packed_training_gives_the_padded_losses_with_less_padding(tmp_path, tiny_model_dir):
    """``--packing`` computes the same loss at every step (the same embeddings, tests/model/test_packing.py)
    on fewer padded positions; metrics.jsonl records the padding either way."""
    data = _write(tmp_path / "train.jsonl", _examples(per_stage=8, stages=2))
    rows = {}
    for packing in (False, True):
        run = tmp_path / f"run-{packing}"
        mghkit.fine_tune(data, base_model=str(tiny_model_dir), out=run, packing=packing, progress=False,
                         **{**FAST, "batch_size": 4})  # fmt: skip
        rows[packing] = _rows(run)
        assert json.loads((run / "training_args.json").read_text())["packing"] is packing
    assert [r["loss"] for r in rows[True]] == pytest.approx([r["loss"] for r in rows[False]], rel=1e-4, abs=1e-5)
    assert [r["tokens"] for r in rows[True]] == [r["tokens"] for r in rows[False]]  # the same real tokens
    assert all(p["padding"] < g["padding"] for p, g in zip(rows[True], rows[False], strict=True))


@pytest.mark.slow
def test_compiled_model_gives_the_plain_outputs_and_gradients(tiny_model_dir):
    from mghkit.model.encoder import load_encoder
    from mghkit.train.speed import compile_model

    enc = load_encoder(str(tiny_model_dir), pooling="mean", dtype="float32")
    texts = ["sodium is natrium", "the earth orbits the sun once a year", "grep prints lines"]

    def run():
        enc.model.zero_grad()
        vec = enc.embed(enc.tokenize(texts))
        vec.pow(2).sum().backward()
        return vec.detach(), [w.grad.clone() for w in enc.model.parameters() if w.grad is not None]

    plain, plain_grads = run()
    keys = list(enc.model.state_dict())
    compile_model(enc.model)
    compiled, compiled_grads = run()
    assert list(enc.model.state_dict()) == keys  # saved weights keep their names
    assert torch.allclose(plain, compiled, rtol=1e-4, atol=1e-5)
    assert len(plain_grads) == len(compiled_grads) > 0
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(plain_grads, compiled_grads, strict=True))


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--report-to", "wandb"], "unknown --report-to 'wandb'"),
        (["--liger", "--device", "cuda"], "liger-kernel package is not installed"),
    ],
)
def test_cli_refuses_unusable_speed_and_report_options_in_one_line_before_torch(tmp_path, extra, expect):
    from tests.train.test_cli_train import _check_fails_before_torch

    path = _write(tmp_path / "train.jsonl", _examples(per_stage=2, stages=1))
    assert expect in _check_fails_before_torch(["train", str(path), "--out", str(tmp_path / "run"), *extra])
