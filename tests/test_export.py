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
    """A LoRA run dir (4 steps on a tiny Llama, one a stage) beside its base model."""
    home = tmp_path_factory.mktemp("export")
    base = save_tiny_model(home / "base")
    data = write_triplets(home / "t.jsonl")
    mghkit.fine_tune(str(data), base_model=str(base), out=home / "run", steps=4, batch_size=2, threads=1,
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
    query_ids = st[0].preprocess(TEXTS, prompt=st.prompts["query"])["input_ids"]
    assert query_ids.tolist() == enc.tokenize(TEXTS, DEFAULT_INSTRUCTION)["input_ids"].tolist()  # the same layout
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
    assert "2509.00842" in card and "| steps | 4 |" in card and "Data lineage" in card


def _without_query_tokens(file):
    """``file`` (a JSON config) as mghkit wrote it before ``query_tokens`` existed."""
    data = json.loads(file.read_text())
    del data["query_tokens"]
    file.write_text(json.dumps(data))


def test_the_export_keeps_the_query_tokenization_of_the_run(trained, tmp_path):
    """A new run tokenizes a query with its prompt as one string, an old run (no ``query_tokens``
    saved) apart; the export carries the mode, and an export made before the key stays "split"."""
    from sentence_transformers import SentenceTransformer

    old_run = _with_pooling(trained, tmp_path, "mean")
    _without_query_tokens(old_run / "mghkit_model.json")
    queries = {}
    for name, run in (("joint", trained), ("split", old_run)):
        enc = mghkit.load_encoder(run)
        assert enc.config.query_tokens == name
        mghkit.export(run, out=tmp_path / name)
        assert json.loads((tmp_path / name / "sentence_bert_config.json").read_text())["query_tokens"] == name
        st = SentenceTransformer(str(tmp_path / name), trust_remote_code=True, device="cpu")
        assert st[0].query_tokens == name
        _assert_same_vectors(st, enc)
        queries[name] = st.encode(TEXTS, prompt_name="query")
    assert _cosines(queries["joint"], queries["split"]).min() < 0.9999  # the mode changes the query vectors
    for file in ("sentence_bert_config.json", "mghkit_model.json"):  # an export written before the key
        _without_query_tokens(tmp_path / "split" / file)
    st = SentenceTransformer(str(tmp_path / "split"), trust_remote_code=True, device="cpu")
    assert st[0].query_tokens == "split" and mghkit.load_encoder(tmp_path / "split").config.query_tokens == "split"
    _assert_same_vectors(st, mghkit.load_encoder(old_run))
    np.testing.assert_allclose(st.encode(TEXTS, prompt_name="query"), queries["split"], atol=1e-6)


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


def test_mteb_scores_the_export_as_mghkit_eval_does(trained, tmp_path):
    """mteb's own sentence-transformers path on the export gives ``mghkit eval``'s figures."""
    import mteb
    from sentence_transformers import SentenceTransformer

    from mghkit.evaluation.data import read_beir, read_sts
    from mghkit.evaluation.tasks import beir_task, sts_task
    from tests.evaluation.conftest import write_beir, write_sts

    sts, beir = write_sts(tmp_path / "toy-sts.jsonl"), write_beir(tmp_path / "toy-beir")
    mghkit.export(trained, out=tmp_path / "st")
    # mghkit's side: the run dir's encoder; the query instruction is the one the export saved as its
    # "query" prompt, STS pairs without an instruction (the export's default: no prompt).
    report = mghkit.evaluate([mghkit.load_encoder(trained)], sts=[sts], beir=[beir], instruction=DEFAULT_INSTRUCTION,
                             sts_instruction="", cache=False)  # fmt: skip
    ours = next(iter(report.scores().values()))
    # mteb's side: SentenceTransformer(export) handed to mteb.evaluate, which picks the prompts itself.
    st = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    theirs = {}
    for t in (sts_task(read_sts(sts)), beir_task(read_beir(beir), instruction=None)):
        res = mteb.evaluate(st, t.task, cache=None, encode_kwargs={"batch_size": 8, "show_progress_bar": False},
                            show_progress_bar=False, overwrite_strategy="always", raise_error=True)  # fmt: skip
        theirs[t.name] = float(res.task_results[0].get_score())
    assert set(theirs) == set(ours) == {"toy-sts", "toy-beir"}
    for name, score in ours.items():
        assert abs(theirs[name] - score) <= 1e-4, (name, theirs, ours)
    assert 0 < ours["toy-beir"] < 1 and ours["toy-sts"] != 0  # real figures, not a degenerate match
    plain = mghkit.evaluate([mghkit.load_encoder(trained)], beir=[beir], instruction="", cache=False)
    assert abs(next(iter(plain.scores().values()))["toy-beir"] - ours["toy-beir"]) > 1e-3  # mteb used the prompt


def test_the_export_loads_without_mghkit(trained, tmp_path):
    """A process where ``import mghkit`` fails loads the export and gives the same vectors."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "st"
    mghkit.export(trained, out=out)
    repo = str(Path(mghkit.__file__).resolve().parent.parent)
    code = f"""
import json, sys
sys.path = [p for p in sys.path if p not in ("", ".", {repo!r})]
sys.modules["mghkit"] = None  # any import of mghkit now raises ImportError
try:
    import mghkit
except ImportError:
    pass
else:
    raise SystemExit("mghkit is importable")
from sentence_transformers import SentenceTransformer
st = SentenceTransformer({str(out)!r}, trust_remote_code=True, device="cpu")
texts = json.loads(sys.stdin.read())
assert not [m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "mghkit"]
print(json.dumps({{"docs": st.encode(texts).tolist(), "queries": st.encode(texts, prompt_name="query").tolist()}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(TEXTS), capture_output=True, text=True,
                          cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    enc = mghkit.load_encoder(trained)
    np.testing.assert_allclose(np.array(got["docs"]), enc.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.array(got["queries"]), enc.encode(TEXTS, instruction=DEFAULT_INSTRUCTION), atol=1e-5)
