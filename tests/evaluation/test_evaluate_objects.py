"""evaluate() with models given as objects (an mghkit Encoder, a SentenceTransformer), as a
notebook passes them; and what evaluate leaves untouched in the process."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mghkit.errors import UsageError
from mghkit.evaluation.run import evaluate


def test_an_encoder_object_scores_like_its_name_and_caches_by_weights(tiny_decoder: Path, beir_dir: Path,
                                                                      sts_file: Path, tmp_path: Path) -> None:  # fmt: skip
    import mghkit

    enc = mghkit.load_encoder(tiny_decoder, pooling="mean")
    by_name = evaluate([str(tiny_decoder)], poolings=["mean"], beir=beir_dir, sts=sts_file, cache=False)
    settings = dict(beir=beir_dir, sts=sts_file, cache_dir=tmp_path / "cache")
    first = evaluate(enc, **settings)
    assert first.scores() == {str(tiny_decoder): by_name.scores()[f"{tiny_decoder} [mean]"]}
    assert first.settings["models"] == [str(tiny_decoder)]  # the label, not the object
    assert first.rows[0]["encoding"]["texts_encoded"] > 0

    again = evaluate([enc], **settings)  # same weights: every vector from the disk cache
    assert again.rows[0]["encoding"]["texts_encoded"] == 0 and again.scores() == first.scores()

    with torch.no_grad():  # the same object, changed in memory: never served stale vectors
        enc.model.get_input_embeddings().weight.mul_(-1.5)
    changed = evaluate([enc], **settings)
    assert changed.rows[0]["encoding"]["texts_encoded"] == first.rows[0]["encoding"]["texts_encoded"]


def test_poolings_and_labels_for_encoder_objects(tiny_decoder: Path, sts_file: Path) -> None:
    from mghkit.model.encoder import load_encoder
    from mghkit.model.tiny import save_tiny_model

    enc = load_encoder(tiny_decoder)
    other = load_encoder(save_tiny_model(tiny_decoder.parent / "tiny-llama-seed1", seed=1))
    other.name = enc.name  # two different models with one name: the second row is told apart
    report = evaluate([enc, other, enc], poolings=["mean", "last"], sts=sts_file, cache=False)
    name = enc.name
    assert [r["label"] for r in report.rows] == [f"{name} [mean]", f"{name} [last]", f"{name}#2 [mean]",
                                                 f"{name}#2 [last]"]  # fmt: skip
    assert report.rows[0]["results"] != report.rows[2]["results"]
    assert enc.config.pooling == "mean"  # the object is left as it was
    assert report.rows[1]["encoding"]["texts_encoded"] == 0  # poolings share one forward pass


def test_a_sentence_transformer_object(sts_file: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from mghkit.paths import embedded_minilm_path

    st = SentenceTransformer(str(embedded_minilm_path()), device="cpu")
    length = st.max_seq_length
    report = evaluate([st, "minilm"], sts=sts_file, max_length=64, cache=False)
    obj, named = report.rows
    assert obj["kind"] == named["kind"] == "sentence-transformers" and obj["max_length"] == 64
    assert obj["results"]["toy-sts"]["main_score"] == pytest.approx(named["results"]["toy-sts"]["main_score"])
    assert st.max_seq_length == length  # the run's max length is undone on the caller's object


def test_bad_models_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot evaluate a dict"):
        evaluate([{"not": "a model"}])
    with pytest.raises(UsageError, match="nothing to evaluate"):
        evaluate([])
    with pytest.raises(UsageError, match="no such model dir"):
        evaluate(str(tmp_path / "missing"))


def test_evaluate_changes_no_process_state(sts_file: Path, tiny_decoder: Path, monkeypatch) -> None:
    monkeypatch.delenv("MTEB_CACHE", raising=False)
    levels = {n: logging.getLogger(n).level for n in ("mteb", "transformers", "datasets", "sentence_transformers")}
    threads = torch.get_num_threads()

    def draws(seed: int | None = None) -> tuple[float, float, list[float]]:
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    expected = draws(seed=123)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    evaluate(str(tiny_decoder), sts=sts_file, cache=False, seed=7)  # mteb seeds the global generators inside
    assert draws() == expected  # the caller's random streams go on as if nothing ran
    assert "MTEB_CACHE" not in os.environ
    assert {n: logging.getLogger(n).level for n in levels} == levels
    assert torch.get_num_threads() == threads


def test_encode_returns_what_evaluate_scores(tiny_decoder: Path) -> None:
    """Encoder.encode is numpy float32 [N, D] unit vectors, as the mteb adapter hands them on."""
    from mghkit.model.encoder import load_encoder

    v = load_encoder(tiny_decoder).encode(["a", "bb", "ccc"], batch_size=2)
    assert isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
