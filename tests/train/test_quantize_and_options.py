"""QLoRA (bitsandbytes on CPU), GradCache and ATA pooling through the loop, on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

from mghkit.train.args import PAPER_MODEL, make_args
from mghkit.train.loop import train


@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_qlora_trains_and_the_run_dir_loads(tiny_model_dir, curriculum_file, tmp_path, quantize):
    from mghkit.model.encoder import load_encoder

    out = tmp_path / quantize
    result = train(make_args(str(curriculum_file), dict(base_model=str(tiny_model_dir), steps=4, batch_size=4,
                                                        out=str(out), quantize=quantize, threads=1)))  # fmt: skip
    assert all(math.isfinite(x) for x in result.losses)
    assert json.loads((out / "training_args.json").read_text())["quantize"] == quantize
    assert load_encoder(str(out)).encode(["salt lamp"]).shape == (1, 32)


def test_triplets_with_a_schedule_grad_cache_and_ata(tiny_model_dir, triplet_file, tmp_path):
    out = tmp_path / "run"
    result = train(make_args(str(triplet_file), dict(base_model=str(tiny_model_dir), steps=4, batch_size=2, grad_accum=2,
                                                     grad_cache=True, pooling="ata", schedule="fine-to-coarse",
                                                     out=str(out), threads=1)))  # fmt: skip
    assert len(result.losses) == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["level"] for r in rows] == ["high", "medium", "medium-low", "low"]  # fine-to-coarse order
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["kind"] == "triplets" and lineage["schedule"] == "fine-to-coarse"
    assert json.loads((out / "mghkit_model.json").read_text())["pooling"] == "ata"


def test_paper_preset_sets_the_papers_hyperparameters_and_explicit_options_win():
    args = make_args("t.jsonl", {"grad_cache": True}, preset="paper")
    assert (args.base_model, args.batch_size, args.grad_accum, args.lr, args.warmup_steps, args.max_length) == (
        PAPER_MODEL, 64, 8, 2e-4, 300, 512)  # fmt: skip
    assert (args.lora_r, args.lora_alpha, args.lora_dropout, args.temperature, args.grad_cache) == (
        16,
        32,
        0.05,
        0.02,
        True,
    )
    assert make_args("t.jsonl", {"batch_size": 2}, preset="paper").batch_size == 2
    assert make_args("t.jsonl", {}, preset="paper").lora_dtype == "base"
    assert make_args("t.jsonl", {"lora_dtype": "float32"}, preset="paper").lora_dtype == "float32"


@pytest.mark.parametrize(("lora_dtype", "expected"), [("float32", "torch.float32"), ("base", "torch.bfloat16")])
def test_lora_dtype_keeps_adapters_in_fp32_or_in_the_base_dtype(tiny_model_dir, curriculum_file, tmp_path, lora_dtype,
                                                                expected):  # fmt: skip
    import torch

    from mghkit.model.config import EncoderConfig
    from mghkit.train.lora import LoraSettings, build_trainable_encoder

    config = EncoderConfig(base_model=str(tiny_model_dir), dtype="bfloat16")
    encoder = build_trainable_encoder(config, lora=LoraSettings(dtype=lora_dtype), device=torch.device("cpu"))
    lora = {str(p.dtype) for n, p in encoder.model.named_parameters() if "lora_" in n}
    base = {str(p.dtype) for n, p in encoder.model.named_parameters() if "lora_" not in n}
    assert lora == {expected} and base == {"torch.bfloat16"}
    # and through the loop: the option is saved and the run trains
    out = tmp_path / lora_dtype
    result = train(make_args(str(curriculum_file), dict(base_model=str(tiny_model_dir), steps=4, batch_size=2,
                                                        out=str(out), dtype="bfloat16", lora_dtype=lora_dtype,
                                                        threads=1)))  # fmt: skip
    assert math.isfinite(result.final_loss)
    assert json.loads((out / "training_args.json").read_text())["lora_dtype"] == lora_dtype


def test_device_option_is_used_and_bad_devices_are_usage_errors(tiny_model_dir, curriculum_file, tmp_path):
    import torch

    from mghkit.errors import UsageError
    from mghkit.train.lora import pick_device

    assert pick_device(0, "cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="not a torch device"):
        pick_device(0, "gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            pick_device(0, "cuda")
    out = tmp_path / "cpu"
    train(make_args(str(curriculum_file), dict(base_model=str(tiny_model_dir), steps=4, batch_size=2, out=str(out),
                                               device="cpu", threads=1)))  # fmt: skip
    assert json.loads((out / "training_args.json").read_text())["device"] == "cpu"
    with pytest.raises(UsageError, match="--lora-dtype"):
        make_args("t.jsonl", {"lora_dtype": "fp8"})
