"""evaluate() against independent computations: nDCG@10 and Spearman worked out with numpy/scipy
from embeddings computed outside mghkit's evaluation code; poolings, several models, the cache,
models given as objects."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from mghkit.evaluation.data import read_beir, read_sts
from mghkit.evaluation.run import EvalReport, evaluate

from .conftest import PAIRS


def ndcg_at_10(q_vecs: np.ndarray, d_vecs: np.ndarray, qids: list[str], dids: list[str], qrels: dict) -> float:
    """Mean nDCG@10 with linear gains, ranking documents by dot product; ties broken as trec_eval does
    (document id, descending)."""
    total = 0.0
    for qi, q in enumerate(qids):
        scores = d_vecs @ q_vecs[qi]
        by_id = sorted(range(len(dids)), key=lambda i: dids[i], reverse=True)
        ranked = [dids[i] for i in sorted(by_id, key=lambda i: -scores[i])[:10]]
        dcg = sum(qrels[q].get(d, 0) / math.log2(r + 2) for r, d in enumerate(ranked))
        ideal = sorted(qrels[q].values(), reverse=True)[:10]
        total += dcg / sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return total / len(qids)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def row(report: EvalReport, label: str) -> dict:
    return next(r for r in report.rows if r["label"] == label)


def test_minilm_and_bm25_figures_match_independent_computation(beir_dir: Path, sts_file: Path, tmp_path: Path) -> None:
    from rank_bm25 import BM25Okapi
    from sentence_transformers import SentenceTransformer

    from mghkit.paths import embedded_minilm_path

    report = evaluate(["minilm"], beir=[beir_dir], sts=[sts_file], baselines=["bm25"], cache_dir=tmp_path / "cache")
    data = read_beir(beir_dir)
    qids, dids = list(data.queries), list(data.corpus)
    docs = [f"{t} {x}".strip() for t, x in data.corpus.values()]

    st = SentenceTransformer(str(embedded_minilm_path()), device="cpu")
    q = st.encode([data.queries[i] for i in qids], normalize_embeddings=True)
    d = st.encode(docs, normalize_embeddings=True)
    minilm = row(report, "minilm")["results"]
    assert minilm["toy-beir"]["main_score"] == pytest.approx(ndcg_at_10(q, d, qids, dids, data.qrels), abs=1e-4)

    s1 = st.encode([a for a, _, _ in PAIRS], normalize_embeddings=True)
    s2 = st.encode([b for _, b, _ in PAIRS], normalize_embeddings=True)
    rho = spearmanr((s1 * s2).sum(1), [s for *_, s in PAIRS]).statistic
    assert minilm["toy-sts"]["main_score"] == pytest.approx(rho, abs=1e-6)
    assert minilm["toy-sts"]["metric"] == "cosine_spearman"

    tok = [re.findall(r"\w+", doc.lower()) for doc in docs]
    bm25 = BM25Okapi(tok)
    scores = np.stack([bm25.get_scores(re.findall(r"\w+", data.queries[i].lower())) for i in qids])
    # rank by score through the same helper: a per-query score vector as "d_vecs @ q"
    expected = np.mean(
        [ndcg_at_10(np.eye(1), scores[k][:, None], [qid], dids, data.qrels) for k, qid in enumerate(qids)]
    )
    bm = row(report, "bm25")
    assert bm["results"]["toy-beir"]["main_score"] == pytest.approx(expected, abs=1e-4)
    assert "toy-sts" not in bm["results"]  # lexical baseline: retrieval tasks only
    assert minilm["toy-beir"]["main_score"] > 0.5  # a real model finds these easy


def test_poolings_share_one_forward_pass_and_match_the_encoder(tiny_decoder: Path, beir_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from mghkit.model.encoder import Encoder, load_encoder

    calls = {"n": 0}
    original = Encoder.forward

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "forward", counting)
    report = evaluate(str(tiny_decoder), poolings=["mean", "last", "ata"], beir=beir_dir,
                      instruction="Find the passage", batch_size=4, cache=False)  # fmt: skip
    assert [r["pooling"] for r in report.rows] == ["mean", "last", "ata"]
    three = calls["n"]
    data = read_beir(beir_dir)
    n_texts = len(data.queries) + len(data.corpus)
    assert three == math.ceil(len(data.queries) / 4) + math.ceil(len(data.corpus) / 4)  # one pass for all three
    assert report.rows[0]["encoding"]["texts_encoded"] == n_texts
    assert report.rows[1]["encoding"]["texts_encoded"] == report.rows[2]["encoding"]["texts_encoded"] == 0

    qids, dids = list(data.queries), list(data.corpus)
    docs = [f"{t} {x}".strip() for t, x in data.corpus.values()]
    enc = load_encoder(str(tiny_decoder))
    for r in report.rows:
        q = enc.encode([data.queries[i] for i in qids], pooling=r["pooling"], instruction="Find the passage")
        d = enc.encode(docs, pooling=r["pooling"])
        assert r["results"]["toy-beir"]["main_score"] == pytest.approx(
            ndcg_at_10(q, d, qids, dids, data.qrels), abs=1e-4
        )
    assert len({r["results"]["toy-beir"]["main_score"] for r in report.rows}) > 1  # poolings differ


def test_cache_hit_avoids_reencoding(tiny_decoder: Path, beir_dir: Path, sts_file: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from mghkit.model.encoder import Encoder

    calls = {"n": 0}
    original = Encoder.forward

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "forward", counting)
    settings = dict(poolings=["mean"], beir=[beir_dir], sts=[sts_file], cache_dir=tmp_path / "cache")
    first = evaluate([str(tiny_decoder)], **settings)
    assert calls["n"] > 0
    calls["n"] = 0
    second = evaluate([str(tiny_decoder)], **settings)
    assert calls["n"] == 0  # everything came from the cache
    assert second.rows[0]["encoding"]["texts_encoded"] == 0
    assert second.scores() == first.scores()
    evaluate([str(tiny_decoder)], max_length=128, **settings)  # another max length is another identity
    assert calls["n"] > 0


def test_several_models_and_poolings_in_one_run(tiny_decoder: Path, tmp_path: Path, sts_file: Path) -> None:
    report = evaluate(["minilm", str(tiny_decoder)], poolings=["mean", "ata"], sts=sts_file, baselines="bm25",
                      cache=False)  # fmt: skip
    assert [r["label"] for r in report.rows] == ["minilm", f"{tiny_decoder} [mean]", f"{tiny_decoder} [ata]", "bm25"]
    assert report.rows[-1]["results"] == {}  # no retrieval task for bm25
    for r in report.rows[:3]:
        assert -1.0 <= r["results"]["toy-sts"]["main_score"] <= 1.0
    assert report.versions["mteb"] and report.versions["torch"] and report.versions["transformers"]
    assert report.rows[1]["dtype"] == "float32" and report.rows[1]["max_length"] == 512


def test_unknown_mteb_task_is_usage_error() -> None:
    from mghkit.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown MTEB task 'SciFactz'.*SciFact"):
        evaluate(["minilm"], tasks=["SciFactz"])


def test_sts_scores_normalised_by_file_range(tmp_path: Path) -> None:
    """A 0-10 file (SimLex-style) and the same file scaled to 0-5 give the same Spearman."""
    from .conftest import write_sts

    a = write_sts(tmp_path / "a.jsonl", [(x, y, s * 2) for x, y, s in PAIRS])
    b = write_sts(tmp_path / "b.jsonl", PAIRS)
    report = evaluate("minilm", sts=[a, b], cache=False)
    res = report.rows[0]["results"]
    assert res["a"]["main_score"] == pytest.approx(res["b"]["main_score"])
    assert read_sts(a).score_range == (0.0, 9.6)


def test_report_file_is_replaced_atomically_and_its_folder_checked_first(tmp_path: Path, sts_file: Path) -> None:
    import json

    from mghkit.errors import UsageError

    report = EvalReport(rows=[{"label": "x", "results": {}}])
    out = tmp_path / "r.json"
    report.save(out)
    assert json.loads(out.read_text())["rows"] == [{"label": "x", "results": {}}]
    report.rows.append({"label": "y", "results": {}})
    report.save(out)  # replaced in place, no temp file left behind
    assert [r["label"] for r in json.loads(out.read_text())["rows"]] == ["x", "y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.json", sts_file.name])
    with pytest.raises(UsageError, match="does not exist"):  # before any model or task is loaded
        evaluate("minilm", sts=sts_file, out=tmp_path / "no" / "r.json")
    written = evaluate([], sts=sts_file, baselines=["bm25"], beir=[], out=out)  # no retrieval task: an empty row
    assert json.loads(out.read_text()) == json.loads(written.to_json())
