"""Packed (padding-free) batches give the padded path's vectors and gradients: every pooling,
bidirectional and causal, sdpa and eager, Llama / Mistral / Qwen2, under LoRA; and the rows carry
far less padding than a padded batch of the same texts."""

from __future__ import annotations

import pytest
import torch

from mghkit.errors import UsageError
from mghkit.model import packing
from mghkit.model.encoder import load_encoder

TEXTS = [
    "ls lists directory contents",
    "grep prints lines matching a pattern; man shows manual pages and the sun is orbited by the earth",
    "Na",
    "Potassium is kalium in Latin, so its symbol is K.",
    "The earth orbits the sun, once a year, and hydrogen comes from hydrogenium.",
    "soap",
]


def _features(enc):
    return [enc.features(t, "Retrieve the page" if i % 2 else None) for i, t in enumerate(TEXTS)]


def test_pack_rows_puts_every_text_once_within_capacity():
    lengths = [17, 3, 9, 30, 1, 12, 8, 30, 2]
    rows = packing.pack_rows(lengths, 30)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 30 for row in rows)
    assert len(rows) == 4  # 112 tokens in rows of 30: first-fit decreasing reaches the bound
    with pytest.raises(ValueError):
        packing.pack_rows([31], 30)


def test_unpack_is_the_inverse_of_packing():
    feats = [([5] * n, [1] * n) for n in (4, 1, 3, 2)]
    batch = packing.collate_packed([([i * 10 + t for t in range(len(ids))], p) for i, (ids, p) in enumerate(feats)], 0)
    back = packing.unpack(batch["input_ids"], batch["segments"])
    assert back.tolist() == [[0, 1, 2, 3], [10, 0, 0, 0], [20, 21, 22, 0], [30, 31, 0, 0]]
    assert packing.unpack(batch["position_ids"], batch["segments"])[0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_packed_vectors_equal_padded_vectors_for_every_pooling(tiny_dirs, family, bidirectional):
    enc = load_encoder(tiny_dirs[family], causal=not bidirectional, dtype="float32")
    feats = _features(enc)
    padded = enc.collate(feats)
    packed = enc.collate_packed(feats)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()  # fewer positions computed
    with torch.no_grad():
        a, b = enc.forward(padded, attention=True), enc.forward(packed, attention=True)
        for pooling in ("mean", "last", "weighted-mean", "ata"):
            va = torch.einsum("bs,bsd->bd", enc.weights(a, pooling), a["hidden"])
            vb = torch.einsum("bs,bsd->bd", enc.weights(b, pooling), b["hidden"])
            torch.testing.assert_close(vb, va, atol=1e-5, rtol=1e-4, msg=f"{family} {pooling}")


def test_one_packed_row_gives_the_same_vectors(tiny_dirs):
    """The flash-attention layout (every text in one row, as transformers' varlen path needs it)
    computes the same vectors as several rows and as a padded batch (checked here under sdpa)."""
    enc = load_encoder(tiny_dirs["mistral"], dtype="float32")
    feats = _features(enc)
    one_row = packing.collate_packed(feats, 0, capacity=sum(len(ids) for ids, _ in feats))
    assert one_row["input_ids"].shape[0] == 1 and int(one_row["attention_mask"].sum()) == one_row["input_ids"].numel()
    with torch.no_grad():
        for pooling in ("mean", "ata"):
            e = enc.with_config(pooling=pooling)
            torch.testing.assert_close(e.embed(one_row), e.embed(enc.collate(feats)), atol=1e-5, rtol=1e-4)


def test_packing_with_ata_under_flash_attention_is_refused_in_one_line(tiny_dirs):
    enc = load_encoder(tiny_dirs["llama"], pooling="ata", dtype="float32")
    enc.model.config._attn_implementation = "flash_attention_2"  # refused before any kernel is called
    batch = enc.collate_packed(_features(enc))
    assert batch["input_ids"].shape[0] == 1  # flash attention: one row
    with pytest.raises(UsageError, match="packing with ATA pooling needs sdpa or eager") as e:
        enc.embed(batch)
    assert "\n" not in str(e.value)


def test_packed_gradients_equal_padded_gradients_under_lora_and_eager(tiny_dirs):
    from peft import LoraConfig, get_peft_model

    results = {}
    for impl in ("sdpa", "eager"):
        enc = load_encoder(tiny_dirs["llama"], pooling="ata", dtype="float32")
        if impl == "eager":
            enc.model.config._attn_implementation = "eager"
        torch.manual_seed(0)
        enc.model = get_peft_model(enc.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        enc.model.train()
        feats = _features(enc)
        for kind, batch in (("padded", enc.collate(feats)), ("packed", enc.collate_packed(feats))):
            enc.model.zero_grad()
            vec = enc.embed(batch, normalize=True)
            (vec @ vec.T).logsumexp(-1).sum().backward()
            grads = [p.grad.clone() for p in enc.model.parameters() if p.requires_grad]
            results[impl, kind] = (vec.detach(), grads)
    for impl in ("sdpa", "eager"):
        va, ga = results[impl, "padded"]
        vb, gb = results[impl, "packed"]
        torch.testing.assert_close(vb, va, atol=1e-5, rtol=1e-4)
        assert len(ga) == len(gb) > 0
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-3)
        assert any(float(g.abs().sum()) > 0 for g in gb)  # the LoRA weights do get gradients


@pytest.fixture
def tiny_bert(tmp_path):
    """An encoder-only model dir (random BERT weights, the tiny BPE tokenizer)."""
    from transformers import BertConfig, BertModel

    from mghkit.model.tiny import save_tiny_model

    tok_dir = save_tiny_model(tmp_path / "tok")
    cfg = BertConfig(vocab_size=400, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    for f in tok_dir.glob("tokenizer*"):
        (tmp_path / "bert" / f.name).write_bytes(f.read_bytes())
    return tmp_path / "bert"


def test_packing_is_refused_for_an_encoder_only_model(tiny_bert):
    enc = load_encoder(str(tiny_bert), dtype="float32")
    with pytest.raises(UsageError, match="packing needs a decoder"):
        enc.collate_packed(_features(enc))


def test_train_packing_on_an_encoder_only_base_is_one_line_exit_2_before_any_step(tiny_bert, tmp_path):
    from tests.conftest import run_cli
    from tests.train.conftest import write_curriculum

    data = write_curriculum(tmp_path / "train.jsonl", per_stage=2)
    run = tmp_path / "run"
    r = run_cli("train", str(data), "--base-model", str(tiny_bert), "--packing", "--batch-size", "2", "--out", str(run),
                "--threads", "1")  # fmt: skip
    err = r.stderr.decode().strip()
    assert r.returncode == 2, err[-2000:]
    errors = [line for line in err.splitlines() if "error" in line]  # after the run's one info line
    assert "Traceback" not in err and len(errors) == 1 and "packing needs a decoder" in errors[0], err
    assert not (run / "metrics.jsonl").exists()  # no step was trained
