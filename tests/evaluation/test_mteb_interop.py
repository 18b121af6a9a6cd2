"""eval speaks mteb: results in mteb's own layout that mteb reads back, sentence-transformers
prompts honoured as mteb honours them, progress while encoding, the device default."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import mghkit
from mghkit.evaluation.spec import EvalSpec, build_tasks, read_local
from mghkit.paths import embedded_minilm_path

SUBSET = {"max_queries": 12, "max_docs": 40, "max_pairs": 12, "cache": False}
PROMPTS = {"query": "Represent this question for retrieving manual pages: ", "document": "passage: "}


@pytest.fixture(scope="module")
def minilm_with_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the embedded all-MiniLM-L6-v2 with query/document prompts stored in its config."""
    st = tmp_path_factory.mktemp("st") / "minilm-prompts"
    shutil.copytree(embedded_minilm_path(), st)
    config = st / "config_sentence_transformers.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prompts": PROMPTS}))
    return st


def _mteb_scores(model: object) -> dict[str, float]:
    """mteb's own evaluation of ``model`` on the same bundled subset."""
    import mteb

    spec = EvalSpec(models=[], seed=0, **{k: v for k, v in SUBSET.items() if k != "cache"})
    beir, sts = read_local(spec)
    out = {}
    for t in build_tasks(spec, beir, sts):
        res = mteb.evaluate(model, t.task, cache=None, show_progress_bar=False, overwrite_strategy="always")
        out[t.name] = float(res.task_results[0].get_score())
    return out


def test_stored_prompts_are_used_as_mteb_uses_them(minilm_with_prompts: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    report = mghkit.evaluate([str(minilm_with_prompts), "minilm"], device="cpu", **SUBSET)
    ours, plain = report.scores()[str(minilm_with_prompts)], report.scores()["minilm"]
    theirs = _mteb_scores(SentenceTransformer(str(minilm_with_prompts), device="cpu"))
    assert ours.keys() == theirs.keys()
    for task, score in theirs.items():
        assert ours[task] == pytest.approx(score, abs=1e-4), task
    assert ours["manpages-retrieval"] != plain["manpages-retrieval"]  # the prompts changed the vectors
    assert report.rows[0]["prompts"] == PROMPTS


def test_output_folder_is_mteb_results_that_mteb_reads_back(tiny_decoder: Path, tmp_path: Path) -> None:
    import mteb

    run = tmp_path / "exp-7"  # a dir named like a run: the ModelMeta is named after it
    shutil.copytree(tiny_decoder, run)
    folder = tmp_path / "mteb-results"
    old = os.umask(0o022)
    try:
        report = mghkit.evaluate([str(run)], baselines=["bm25"], output_folder=folder, device="cpu", **SUBSET)
    finally:
        os.umask(old)
    row = report.rows[0]
    assert row["mteb_name"] == "mghkit/exp-7" and len(row["mteb_revision"]) == 12
    model_dir = folder / "results" / "mghkit__exp-7" / row["mteb_revision"]
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "manpages-retrieval.json", "model_meta.json", "run_settings.jsonl", "simlex999-sts.json"]  # fmt: skip
    assert json.loads((model_dir / "model_meta.json").read_text())["name"] == "mghkit/exp-7"

    loaded = mteb.ResultCache(folder).load_results(include_remote=False)
    got = {(m.model_name, m.model_revision): {t.task_name: float(t.get_score()) for t in m.task_results}
           for m in loaded.model_results}  # fmt: skip
    want = {(r["mteb_name"], r["mteb_revision"]): {k: v["main_score"] for k, v in r["results"].items()}
            for r in report.rows}  # fmt: skip
    assert got.keys() == want.keys() and ("mghkit/bm25", report.rows[1]["mteb_revision"]) in got
    for key, scores in want.items():
        assert got[key] == pytest.approx(scores, abs=1e-5), key
    for p in model_dir.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p  # files as any tool writes them (umask 022)


def test_output_folder_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    from mghkit.errors import UsageError

    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        mghkit.evaluate([], baselines=["bm25"], output_folder=tmp_path / "f", **SUBSET)


def test_progress_follows_every_text_and_chunks_give_the_same_vectors(tiny_decoder: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    with_bar = mghkit.evaluate([str(tiny_decoder)], device="cpu", batch_size=4, progress=lambda *a: calls.append(a),
                               **SUBSET)  # fmt: skip
    without = mghkit.evaluate([str(tiny_decoder)], device="cpu", batch_size=4, **SUBSET)
    ends = [c for c in calls if c[1] == c[2] and c[2] > 0]
    assert ends and all(c[0] == str(tiny_decoder) for c in calls)
    assert sum(c[2] for c in ends) == with_bar.rows[0]["encoding"]["texts_encoded"]
    label = str(tiny_decoder)
    assert with_bar.scores()[label] == pytest.approx(without.scores()[label], abs=1e-5)


def test_device_defaults_to_cuda_when_present() -> None:
    import torch

    from mghkit.model.config import default_device

    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
