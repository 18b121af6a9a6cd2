"""mghkit export: a run dir that sentence-transformers and plain transformers load, with mghkit's vectors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import mghkit
from mghkit.exporting.run import DEFAULT_INSTRUCTION
from mghkit.model.tiny import save_tiny_model
from tests.conftest import run_main
from tests.train.conftest import write_triplets

TEXTS = ["salt lamp", "the earth orbits the sun once a year", "grep prints lines matching a pattern in files"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA run dir (2 steps on a tiny Llama) beside its base model."""
    home = tmp_path_factory.mktemp("export")
    base = save_tiny_model(home / "base")
    data = write_triplets(home / "t.jsonl")
    mghkit.fine_tune(str(data), base_model=str(base), out=home / "run", steps=2, batch_size=2, threads=1,
                     lora_dropout=0.0, progress=False)  # fmt: skip
    return home / "run"


def _with_pooling(trained, tmp_path, pooling):
    """A copy of the run (and its base) whose saved pooling is ``pooling``."""
    home = tmp_path / "home"
    shutil.copytree(trained.parent, home)
    config = home / "run" / "mghkit_model.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "pooling": pooling}))
    return home / "run"


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _assert_same_vectors(st, enc):
    docs = _cosines(st.encode(TEXTS), enc.encode(TEXTS))
    queries = _cosines(st.encode(TEXTS, prompt_name="query"), enc.encode(TEXTS, instruction=DEFAULT_INSTRUCTION))
    assert docs.min() >= 0.9999 and queries.min() >= 0.9999, (docs, queries)
    no_prompt = _cosines(st.encode(TEXTS), enc.encode(TEXTS, instruction=DEFAULT_INSTRUCTION))
    assert no_prompt.min() < 0.9999  # the query prompt matters, so the check above is not vacuous


@pytest.mark.parametrize("pooling", ["mean", "last", "weighted-mean", "ata"])
def test_sentence_transformers_gives_mghkit_vectors(trained, tmp_path, pooling):
    from sentence_transformers import SentenceTransformer

    run = _with_pooling(trained, tmp_path, pooling)
    result = mghkit.export(run, format="sentence-transformers", out=tmp_path / "st")
    assert result.merged and result.pooling == pooling
    st = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    assert st.prompts["query"] == f"Instruct: {DEFAULT_INSTRUCTION}\nQuery: "
    _assert_same_vectors(st, mghkit.load_encoder(run))
    card = (tmp_path / "st" / "README.md").read_text()
    assert "2509.00842" in card and "| steps | 2 |" in card and "Data lineage" in card


def test_hf_export_loads_with_plain_transformers(trained, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    out = tmp_path / "hf"
    code = run_main("export", str(trained), "--format", "hf", "--out", str(out))
    assert code == 0 and not (out / "modules.json").exists()
    model, tok = AutoModel.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.is_causal is False
    enc = mghkit.load_encoder(trained)
    batch = enc.tokenize(TEXTS[:1])
    ids = tok(TEXTS[0], return_tensors="pt")["input_ids"]
    assert ids.tolist() == batch["input_ids"].tolist()  # the exported tokenizer appends EOS as mghkit does
    with torch.no_grad():
        plain = model(input_ids=ids).last_hidden_state  # no is_causal argument: the saved config decides
        ours = enc.forward(batch)["hidden"]
    torch.testing.assert_close(plain, ours, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(mghkit.load_encoder(out).encode(TEXTS), enc.encode(TEXTS), atol=1e-5)


def test_no_merge_keeps_the_adapter_and_loads(trained, tmp_path):
    from sentence_transformers import SentenceTransformer

    result = mghkit.export(trained, out=tmp_path / "st", merge=False)
    assert not result.merged and (tmp_path / "st" / "adapter" / "adapter_config.json").is_file()
    st = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    _assert_same_vectors(st, mghkit.load_encoder(trained))
    mghkit.export(trained, format="hf", out=tmp_path / "hf", merge=False)
    np.testing.assert_allclose(mghkit.load_encoder(tmp_path / "hf").encode(TEXTS),
                               mghkit.load_encoder(trained).encode(TEXTS), atol=1e-5)  # fmt: skip


def test_a_copied_export_still_loads(trained, tmp_path):
    from sentence_transformers import SentenceTransformer

    mghkit.export(trained, out=tmp_path / "a" / "st")
    shutil.copytree(tmp_path / "a" / "st", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    for f in (tmp_path / "b").rglob("*.json"):
        assert str(tmp_path) not in f.read_text()
    st = SentenceTransformer(str(tmp_path / "b"), trust_remote_code=True, device="cpu")
    _assert_same_vectors(st, mghkit.load_encoder(trained))


def test_bad_input_is_one_line_exit_2(trained, tmp_path, capfd):
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        ((str(tmp_path), "--out", str(tmp_path / "o")), "not a mghkit run dir"),
        ((str(trained), "--format", "onnx", "--out", str(tmp_path / "o")), "unknown format 'onnx'"),
        ((str(trained), "--out", str(tmp_path / "full")), "is not empty"),
        ((str(trained), "--out", str(tmp_path / "file")), "is not a directory"),
        ((str(trained), "--out", str(trained / "inside")), "inside the run dir"),
    ]
    for args, message in cases:
        assert run_main("export", *args) == 2
        err = capfd.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
