"""mghkit.ablate end to end on a tiny random decoder: cells are run dirs, a rerun skips them, an
interrupted cell resumes, the base is encoded once for all poolings, the report is written."""

from __future__ import annotations

import json

import pytest

import mghkit
from tests.evaluation.conftest import write_beir, write_sts
from tests.train.conftest import write_triplets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mghkit.model.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", family="llama")


@pytest.fixture
def data(tmp_path):
    return (
        write_triplets(tmp_path / "triplets.jsonl", n=16),
        write_beir(tmp_path / "beir"),
        write_sts(tmp_path / "sts.jsonl"),
    )


def run(tiny, data, out, **kw):
    triplets, beir, sts = data
    options = {"batch_size": 2, "save_every": 1, "gradient_checkpointing": False}
    return mghkit.ablate(triplets, out=out, eval_beir=[beir], eval_sts=[sts], base_model=str(tiny),
                         steps=kw.pop("steps", 4), max_length=96, train_options=options, threads=1, **kw)  # fmt: skip


@pytest.mark.slow
def test_grid_report_rerun_and_resume(tiny, data, tmp_path):
    out = tmp_path / "abl"
    grid = {"schedules": "coarse-to-fine,random", "poolings": "mean,ata", "seeds": 2}
    # a cell interrupted after step 2 (what a kill -9 leaves: a checkpoint, no finished model)
    cell = out / "cells" / "random__ata__s1"
    stopped = mghkit.fine_tune(data[0], out=cell, base_model=str(tiny), schedule="random", pooling="ata", seed=1,
                               steps=4, batch_size=2, save_every=1, gradient_checkpointing=False, max_length=96,
                               stop_after=2, threads=1, progress=False)  # fmt: skip
    assert not stopped.finished

    seen = []
    report = run(tiny, data, out, progress=lambda d, done, total: seen.append((d, done, total)), **grid)
    assert seen[0] == ("base model", 0, 9) and seen[-1] == ("done", 9, 9)

    # every cell is an ordinary, finished run dir; the interrupted one went on from its checkpoint
    cells = sorted(p.name for p in (out / "cells").iterdir() if not p.name.startswith("."))
    assert len(cells) == 8
    steps = [json.loads(x)["step"] for x in (cell / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    enc = mghkit.load_encoder(out / "cells" / "coarse-to-fine__ata__s0")
    assert enc.config.pooling == "ata" and enc.encode(["x"]).shape[0] == 1

    # the base: one evaluation, both poolings, texts encoded once (the second pooling's row reads them)
    base = json.loads((out / "base" / "ablation_eval.json").read_text())
    assert [r["pooling"] for r in base["rows"]] == ["mean", "ata"]
    assert base["rows"][1]["encoding"]["texts_encoded"] == 0

    # the report: 2 metrics (retrieval and STS), base rows + 4 trained rows, 2 seeds each, claims
    assert len(report.metrics) == 2
    assert {r["row"] for r in report.rows} == {"base / mean", "base / ata", "coarse-to-fine / mean",
                                                 "coarse-to-fine / ata", "random / mean", "random / ata"}  # fmt: skip
    trained = next(r for r in report.rows if r["row"] == "random / ata")
    assert all(m["n"] == 2 and m["diff"]["n"] == 2 for m in trained["metrics"].values())
    claims = {c["claim"] for c in report.claims}
    assert "coarse-to-fine beats random (ata pooling)" in claims and "ata beats mean pooling (coarse-to-fine)" in claims
    saved = json.loads((out / "ablation.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report.rows))
    assert "### The paper's claims" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").stat().st_size > 1000

    # a rerun trains nothing and evaluates nothing: the same figures
    before = {p: p.stat().st_mtime_ns for p in out.rglob("ablation_eval.json")}
    again = run(tiny, data, out, **grid)
    assert again.timings == {"train_s": 0.0, "eval_s": 0.0, "base_eval_s": 0.0}
    assert again.rows == report.rows
    assert {p: p.stat().st_mtime_ns for p in out.rglob("ablation_eval.json")} == before

    # other training settings (steps) never mix with these cells: one line, nothing trained
    with pytest.raises(mghkit.UsageError, match=r"trained with other settings \(steps differ\)"):
        run(tiny, data, out, steps=8, **grid)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("ablation_eval.json")} == before
