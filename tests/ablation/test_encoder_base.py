"""A sentence-transformers encoder as the base model of train / ablate (all-MiniLM-L6-v2)."""

from __future__ import annotations

import pytest

from mghkit.model.loading import is_sentence_encoder
from tests.conftest import run_main
from tests.train.conftest import write_triplets


@pytest.fixture(scope="module")
def minilm():
    from mghkit.paths import embedded_minilm_path

    return str(embedded_minilm_path())


def test_encoders_are_told_from_decoders(minilm, tmp_path):
    from mghkit.model.tiny import save_tiny_model

    assert is_sentence_encoder(minilm)
    assert not is_sentence_encoder(str(save_tiny_model(tmp_path / "tiny")))
    assert not is_sentence_encoder("local") and not is_sentence_encoder("org/some-hub-id")
    run = tmp_path / "run"  # a run dir trained on the encoder answers for its base
    run.mkdir()
    (run / "mghkit_model.json").write_text(f'{{"base_model": "{minilm}", "pooling": "mean"}}')
    assert is_sentence_encoder(str(run))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pooling", "ata"], "is an encoder; ATA applies to decoders only"),
        (["--causal"], "is an encoder; the bidirectional switch applies to decoders only"),
    ],
)
def test_train_refuses_decoder_only_options_on_an_encoder(minilm, tmp_path, capfd, args, needle):
    data = write_triplets(tmp_path / "t.jsonl")
    out = tmp_path / "run"
    assert run_main("train", str(data), "--base-model", minilm, "--steps", "4", "--out", str(out), *args) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
    assert not (out / "training_data.jsonl").exists()


@pytest.mark.slow
def test_lora_goes_on_the_encoder_layers(minilm):
    from mghkit.model.config import EncoderConfig
    from mghkit.train.lora import build_trainable_encoder

    enc = build_trainable_encoder(EncoderConfig(base_model=minilm, max_length=32), gradient_checkpointing=False)
    trainable = {n for n, p in enc.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {"query", "key", "value", "dense"}
    batch = enc.tokenize(["list directory contents"], instruction="Find the manual page")
    enc.embed(batch).sum().backward()  # gradients reach the adapters
    assert any(p.grad is not None for n, p in enc.model.named_parameters() if n in trainable)
