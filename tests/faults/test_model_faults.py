"""train, eval and pool-inspect under faults, with real subprocesses and tiny models: outputs that
name an input, devices and FIFOs as outputs, training files that can be read only once, a full
disk, a read-only folder, broken caches, bad evaluation data, bad options (refused before torch is
imported) and SIGTERM / kill -9 during training. What each command promises: docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.evaluation.conftest import write_beir, write_sts
from tests.faults.conftest import unprivileged
from tests.train.conftest import write_curriculum

PY = sys.executable
TRAIN = ["--steps", "4", "--batch-size", "4", "--threads", "1", "--lora-dropout", "0"]
EVAL = ["--threads", "1", "--max-length", "64"]


# ----------------------------------------------------------------------------- helpers
def one_line(err: bytes | str) -> str:
    """stderr whose `mghkit: error:` part is exactly one line, no traceback; returns that line."""
    text = err.decode() if isinstance(err, bytes) else err
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("mghkit: error: ")]
    assert len(errors) == 1, text
    return errors[0]


def fails_before_torch(args: list[str], *, code: int = 2, stdin: bytes = b"", prefix: list[str] | None = None,
                       env: dict[str, str] | None = None) -> str:  # fmt: skip
    """Run the CLI in a fresh interpreter: it must exit ``code`` with one error line and never
    import torch (so it failed before any model could load). Returns the error line."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        os.chmod(result.name, 0o666)  # an unprivileged child writes its verdict here
        child = (
            "import json, sys\n"
            f"sys.argv = ['mghkit', *{args!r}]\n"
            "from mghkit.cli import main\n"
            "code = 0\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            f"json.dump({{'code': code, 'torch': 'torch' in sys.modules}}, open({result.name!r}, 'w'))\n"
        )
        r = subprocess.run([*(prefix or []), PY, "-c", child], input=stdin, capture_output=True, cwd=REPO,
                           timeout=120, env={**os.environ, **(env or {})})  # fmt: skip
        verdict = json.loads(Path(result.name).read_text() or "{}")
    assert verdict == {"code": code, "torch": False}, (verdict, r.stderr.decode())
    return one_line(r.stderr)


def error_lines(r: subprocess.CompletedProcess[bytes]) -> list[str]:
    text = r.stderr.decode()
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("mghkit: error: ")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from mghkit.model.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache root of this test's own (the children inherit it)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MGHKIT_CACHE_DIR", str(root))
    return root


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir(tmp_path / "beir")


@pytest.fixture
def sts(tmp_path) -> Path:
    return write_sts(tmp_path / "sts.jsonl")


@pytest.fixture
def curriculum(tmp_path) -> Path:
    return write_curriculum(tmp_path / "train.jsonl")


@pytest.fixture
def no_write(tiny, curriculum, sts) -> Iterator[tuple[list[str], Path, dict[str, Path]]]:
    """(a command prefix that runs a child unable to write the folder, the folder, copies of the
    inputs it can read): root with the file-permission override dropped (it can still run this
    Python, wherever it lives), else the user nobody. The folder belongs to nobody, mode 0555:
    neither may write it."""
    if os.geteuid() != 0:
        pytest.skip("not root: the folder could be made read-only with chmod, but the checks here drop root's rights")
    base = Path(tempfile.mkdtemp(prefix="mghkit-ro-"))  # tmp_path's parents are 0700: nobody could not reach it
    base.chmod(0o755)
    inputs = {"tiny": base / "tiny", "train": base / "train.jsonl", "sts": base / "sts.jsonl", "cache": base / "cache"}
    shutil.copytree(tiny, inputs["tiny"])
    shutil.copy(curriculum, inputs["train"])
    shutil.copy(sts, inputs["sts"])
    inputs["cache"].mkdir(mode=0o777)
    inputs["cache"].chmod(0o777)
    folder = base / "ro"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    folder.chmod(0o555)
    try:
        yield unprivileged(folder), folder, inputs
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _reader(fifo: Path, into: list[bytes]) -> threading.Thread:
    """A thread that reads ``fifo`` to its end (as `cat fifo > x` would)."""

    def read() -> None:
        with open(fifo, "rb") as fp:
            into.append(fp.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _writer(fifo: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(fifo, "wb") as fp:
            fp.write(data)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def _small_file_limit() -> None:  # preexec_fn: files of at most 4 KB (a full disk for what we write)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


# ----------------------------------------------------------------------------- 1. an output is never an input
@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_eval_refuses_to_overwrite_an_sts_file(sts, tmp_path, alias, tiny, cache):
    out = {"same": sts, "symlink": tmp_path / "link.json", "hardlink": tmp_path / "hard.json"}[alias]
    if alias == "symlink":
        out.symlink_to(sts)
    elif alias == "hardlink":
        os.link(sts, out)
    before = sts.read_bytes()
    line = fails_before_torch(["eval", "--model", str(tiny), "--sts", str(sts), "--out", str(out)])
    assert f"--out {out}: same as the input {sts}" in line
    assert sts.read_bytes() == before


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_eval_refuses_to_overwrite_a_beir_file(beir, name, tiny, cache):
    target = beir / name
    before = target.read_bytes()
    line = fails_before_torch(["eval", "--model", str(tiny), "--beir", str(beir), "--out", str(target)])
    assert "same as the input" in line and str(target) in line
    assert target.read_bytes() == before


def test_eval_refuses_to_overwrite_the_model_or_the_cache(sts, tiny, cache):
    config = tiny / "config.json"
    before = config.read_bytes()
    assert "same as the input" in fails_before_torch(["eval", "-m", str(tiny), "--sts", str(sts), "--out", str(config)])
    assert config.read_bytes() == before
    db = cache / "eval" / "embeddings.sqlite3"  # an earlier run's cache
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    assert "same as the input" in fails_before_torch(["eval", "-m", str(tiny), "--sts", str(sts), "--out", str(db)])


# ----------------------------------------------------------------------------- 2. devices stay devices
def test_eval_report_to_dev_null_and_dev_stdout(sts, tiny, cache):
    before = os.stat("/dev/null")
    r = run_cli("eval", "-m", str(tiny), "--sts", str(sts), *EVAL, "--out", "/dev/null", timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    r = run_cli("eval", "-m", str(tiny), "--sts", str(sts), *EVAL, "--out", "/dev/stdout", timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert [row["label"] for row in json.loads(r.stdout)["rows"]] == [str(tiny)]  # one document, nothing else


def test_eval_report_to_a_fifo_is_written_once_after_the_last_row(beir, sts, tiny, cache, tmp_path):
    """Two rows (the model and the BM25 baseline): a per-row save would open the FIFO twice, and
    the second open waits forever for a reader that has gone."""
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _reader(fifo, got)
    r = run_cli("eval", "-m", str(tiny), "--beir", str(beir), "--sts", str(sts), "--baseline", "bm25", *EVAL,
                "--out", str(fifo), timeout=300)  # fmt: skip
    reader.join(10)
    assert r.returncode == 0, r.stderr.decode()
    assert [row["label"] for row in json.loads(got[0])["rows"]] == [str(tiny), "bm25"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_pool_inspect_html_to_dev_null_and_a_fifo(tiny, tmp_path, cache):
    before = os.stat("/dev/null")
    r = run_cli("pool-inspect", "--model", str(tiny), "--html", "/dev/null", "sodium latin name", timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert os.stat("/dev/null").st_rdev == before.st_rdev and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "page.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _reader(fifo, got)
    r = run_cli("pool-inspect", "--model", str(tiny), "--html", str(fifo), "sodium latin name", timeout=300)
    reader.join(10)
    assert r.returncode == 0, r.stderr.decode()
    assert got[0].startswith(b"<!doctype html>")


# ----------------------------------------------------------------------------- 3. training streams are read once
def _lineage(run: Path) -> dict:
    return json.loads((run / "lineage.json").read_text())


def test_train_reads_a_fifo_once_into_the_run_dir(curriculum, tiny, tmp_path, cache):
    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)
    writer = _writer(fifo, curriculum.read_bytes())
    run = tmp_path / "run"
    r = run_cli("train", str(fifo), "--base-model", str(tiny), "--out", str(run), *TRAIN, timeout=120)
    writer.join(10)
    assert r.returncode == 0, r.stderr.decode()
    lineage = _lineage(run)
    assert lineage["input_sha256"] == hashlib.sha256(curriculum.read_bytes()).hexdigest()
    assert lineage["read_from"] == str(fifo) and lineage["input"] == "./training_data.jsonl"
    assert (run / "training_data.jsonl").read_bytes() == curriculum.read_bytes()
    assert json.loads((run / "training_args.json").read_text())["data"] == "./training_data.jsonl"  # replayable


def test_train_from_stdin_and_process_substitution(curriculum, tiny, tmp_path, cache):
    sha = hashlib.sha256(curriculum.read_bytes()).hexdigest()
    run = tmp_path / "stdin-run"
    r = run_cli("train", "-", "--base-model", str(tiny), "--out", str(run), *TRAIN, stdin=curriculum.read_bytes(),
                timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert _lineage(run)["input_sha256"] == sha and _lineage(run)["read_from"] == "<stdin>"
    # a resumed stdin run must bring the same bytes (its sha is the file's, not that of the name "<stdin>")
    other = b"".join(curriculum.read_bytes().splitlines(keepends=True)[:8])
    r = run_cli("train", "-", "--base-model", str(tiny), "--out", str(run), *TRAIN, "--resume", stdin=other)
    assert r.returncode == 2 and "resume with other examples" in one_line(r.stderr)
    assert (run / "training_data.jsonl").read_bytes() == curriculum.read_bytes()
    if shutil.which("bash") is None:
        pytest.skip("no bash for <(...)")
    run2 = tmp_path / "procsub-run"
    command = f"exec {PY} -m mghkit train <(cat {curriculum}) --base-model {tiny} --out {run2} {' '.join(TRAIN)}"
    r = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()
    assert _lineage(run2)["input_sha256"] == sha and _lineage(run2)["read_from"].startswith("/dev/fd/")


def test_a_bad_training_stream_names_stdin_and_leaves_no_run_dir(tmp_path, tiny, cache):
    run = tmp_path / "run"
    line = fails_before_torch(["train", "-", "--base-model", str(tiny), "--out", str(run)], stdin=b'{"bad": 1}\n')
    assert line.startswith("mghkit: error: <stdin>:1: neither a curriculum example")
    assert not run.exists()


# ----------------------------------------------------------------------------- 4. a full disk, a read-only folder
def test_eval_report_to_a_full_device_is_one_line_and_the_rows_stay_cached(beir, sts, tiny, cache, tmp_path):
    r = run_cli("eval", "-m", str(tiny), "--beir", str(beir), "--sts", str(sts), *EVAL, "--out", "/dev/full",
                timeout=300)  # fmt: skip
    assert r.returncode == 1
    assert error_lines(r) == ["mghkit: error: /dev/full: cannot write the report: No space left on device"]
    assert "main scores" in r.stderr.decode()  # every row was evaluated and shown
    out = tmp_path / "r.json"
    r = run_cli("eval", "-m", str(tiny), "--beir", str(beir), "--sts", str(sts), *EVAL, "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    encoding = json.loads(out.read_text())["rows"][0]["encoding"]
    assert encoding["texts_encoded"] == 0 and encoding["texts_from_cache"] > 0  # the rerun encoded nothing


def test_eval_report_on_a_disk_that_fills_up_keeps_the_previous_report(beir, sts, tiny, cache, tmp_path):
    """A regular report that cannot be saved after a row: one warning, the other rows run, and
    the end gives one error line; the report already there is left as it was."""
    out = tmp_path / "r.json"
    out.write_text('{"previous": "report"}\n')
    r = subprocess.run([PY, "-m", "mghkit", "eval", "-m", str(tiny), "--beir", str(beir), "--sts", str(sts),
                        "--baseline", "bm25", *EVAL, "--no-cache", "--out", str(out)], capture_output=True,
                       timeout=300, preexec_fn=_small_file_limit)  # fmt: skip
    assert r.returncode == 1
    assert error_lines(r) == [f"mghkit: error: {out}: cannot write the report: File too large"]
    err = r.stderr.decode()
    assert f"mghkit: {out}: cannot write the report (File too large); going on with the other rows" in err
    assert "bm25 on beir" in err  # the row after the failed save still ran
    assert out.read_text() == '{"previous": "report"}\n'
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file, no lock


def test_pool_inspect_html_to_a_full_device(tiny, cache):
    r = run_cli("pool-inspect", "--model", str(tiny), "--html", "/dev/full", "sodium latin name", timeout=300)
    assert r.returncode == 1
    assert error_lines(r) == ["mghkit: error: /dev/full: No space left on device"]


def test_read_only_folder_is_one_line_before_any_model(no_write):
    prefix, folder, inputs = no_write
    tiny, env = str(inputs["tiny"]), {"MGHKIT_CACHE_DIR": str(inputs["cache"])}
    for args, path in [
        (["train", str(inputs["train"]), "--base-model", tiny, "--out", str(folder / "run")], folder / "run"),
        (["eval", "-m", tiny, "--sts", str(inputs["sts"]), "--out", str(folder / "r.json")], folder / "r.json"),
        (["pool-inspect", "--model", tiny, "--html", str(folder / "p.html"), "x"], folder / "p.html"),
    ]:
        line = fails_before_torch(args, code=1, prefix=prefix, env=env)
        assert line.startswith(f"mghkit: error: {path}: Permission denied"), line
    assert list(folder.iterdir()) == []


def test_train_on_a_disk_that_fills_up_is_one_line_and_can_start_over(curriculum, tiny, tmp_path, cache):
    """The first checkpoint does not fit (files of at most 100 KB): one line naming the file,
    no half checkpoint left; the same command, with room, then starts the run over."""
    run = tmp_path / "run"
    args = [PY, "-m", "mghkit", "train", str(curriculum), "--base-model", str(tiny), "--out", str(run), *TRAIN]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = subprocess.run(args, capture_output=True, timeout=300, cwd=REPO, preexec_fn=limit)
    assert r.returncode == 1
    [line] = error_lines(r)
    assert line.startswith(f"mghkit: error: {run}/checkpoints/step-000004.tmp/") and line.endswith(": File too large")
    assert list((run / "checkpoints").iterdir()) == []
    r = subprocess.run(args, capture_output=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()
    assert _check_run_dir(run) == 4 and (run / "mghkit_model.json").is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    for f in [*(run / "adapter").iterdir(), *(run / "checkpoints" / "step-000004").iterdir()]:  # readable by others
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_a_full_disk_while_saving_the_adapter_names_it_and_leaves_no_temp_dir(tmp_path):
    from safetensors import SafetensorError

    from mghkit.train.rundir import _folder_in_one_piece

    folder = tmp_path / "adapter"
    with pytest.raises(OSError) as caught, _folder_in_one_piece(folder) as tmp:
        tmp.mkdir()
        (tmp / "adapter_config.json").write_text("{}")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert caught.value.errno == 28 and caught.value.filename == str(folder)
    assert list(tmp_path.iterdir()) == []
    with _folder_in_one_piece(folder) as tmp:  # and a whole one replaces the old one in one rename
        tmp.mkdir()
        (tmp / "adapter_config.json").write_text('{"new": 1}')
    assert json.loads((folder / "adapter_config.json").read_text()) == {"new": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


# ----------------------------------------------------------------------------- 5. broken caches
def test_a_corrupt_embedding_cache_is_moved_aside_with_one_warning(sts, tiny, cache):
    db = cache / "eval" / "embeddings.sqlite3"
    db.parent.mkdir(parents=True)
    garbage = os.urandom(5000)
    db.write_bytes(garbage)
    r = run_cli("eval", "-m", str(tiny), "--sts", str(sts), *EVAL, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    [aside] = db.parent.glob("embeddings.sqlite3.broken-*")
    warnings = [line for line in r.stderr.decode().splitlines() if "damaged" in line]
    assert len(warnings) == 1 and str(db) in warnings[0] and str(aside) in warnings[0], r.stderr.decode()
    assert aside.read_bytes() == garbage  # kept for a post-mortem, not deleted
    with sqlite3.connect(db) as con:  # the new cache holds this run's vectors
        assert con.execute("SELECT count(*) FROM emb").fetchone()[0] == 20


@pytest.mark.parametrize("kind", ["cache-dir is a file", "cache file is a dir", "eval is a file"])
def test_a_cache_path_that_cannot_be_a_cache_is_exit_2(sts, tiny, tmp_path, kind):
    root = tmp_path / "c"
    if kind == "cache-dir is a file":
        root.write_text("x")
    elif kind == "cache file is a dir":
        (root / "eval" / "embeddings.sqlite3").mkdir(parents=True)
    else:
        root.mkdir()
        (root / "eval").write_text("x")
    line = fails_before_torch(["eval", "-m", str(tiny), "--sts", str(sts), "--cache-dir", str(root)])
    assert str(root) in line


def test_embedding_cache_survives_damage_and_a_disk_that_fills_up(tmp_path, caplog):
    import numpy as np

    from mghkit.evaluation.cache import EmbeddingCache

    path = tmp_path / "e.sqlite3"
    c = EmbeddingCache(path)
    c.put_many("m", None, [f"t{i}" for i in range(400)], np.ones((400, 64), dtype=np.float32))
    c.close()
    with path.open("r+b") as fp:  # keep the header, wreck the pages after it
        fp.seek(4096)
        fp.write(os.urandom(path.stat().st_size - 4096))
    with caplog.at_level(logging.WARNING, logger="mghkit"):
        c = EmbeddingCache(path)
        assert c.get_many("m", None, ["t1", "t399"]) == [None, None]  # misses, not a crash
        c.put_many("m", None, ["new"], np.zeros((1, 4), dtype=np.float32))
        assert c.get_many("m", None, ["new"])[0].tolist() == [0.0] * 4
    assert caplog.text.count("damaged") == 1 and len(list(tmp_path.glob("e.sqlite3.broken-*"))) == 1
    caplog.clear()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size, hard))  # the file cannot grow: a full disk
    try:
        with caplog.at_level(logging.WARNING, logger="mghkit"):
            texts = [f"u{i}" for i in range(2000)]
            c.put_many("m", None, texts, np.ones((2000, 64), dtype=np.float32))
            c.put_many("m", None, ["v"], np.ones((1, 64), dtype=np.float32))
            assert all(v is not None for v in c.get_many("m", None, [*texts, "v", "new"]))  # kept for this run
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    c.close()
    assert caplog.text.count("cannot be written") == 1, caplog.text


def test_damaged_model_weights_are_one_line(tiny, tmp_path, cache):
    bad = tmp_path / "bad-model"
    shutil.copytree(tiny, bad)
    weights = bad / "model.safetensors"
    with weights.open("r+b") as fp:
        fp.truncate(weights.stat().st_size // 2)
    r = run_cli("pool-inspect", "--model", str(bad), "x", timeout=300)
    assert r.returncode == 2
    assert error_lines(r) == [f"mghkit: error: {weights}: damaged weights file "
                              f"({weights.stat().st_size} bytes where its header describes "
                              f"{(tiny / 'model.safetensors').stat().st_size})"]  # fmt: skip


def test_a_damaged_local_conversion_is_converted_again(tiny, tmp_path, monkeypatch, caplog):
    """The `local` model's cached conversion with a cut model.safetensors (a run killed while the
    disk was full, a copy cut short): noticed from its header, converted again with a warning."""
    from mghkit.model import loading

    cache_root = tmp_path / "cache"
    target = cache_root / loading.LOCAL_CACHE_SUBDIR
    shutil.copytree(tiny, target)
    assert loading.local_model_problem(cache_root) is None and loading.local_model_cached(cache_root)
    with (target / "model.safetensors").open("r+b") as fp:
        fp.truncate(1000)
    assert "model.safetensors" in loading.local_model_problem(cache_root)
    (target / "tokenizer.json").write_text("{cut")
    assert loading.local_model_problem(cache_root) == "tokenizer.json: not valid JSON"
    converted: list[Path] = []

    def fake_convert(folder: Path) -> None:  # the real one dequantises the GGUF (~15 s)
        converted.append(folder)
        shutil.copytree(tiny, folder)

    monkeypatch.setattr(loading, "_convert_embedded", fake_convert)
    with caplog.at_level(logging.WARNING, logger="mghkit"):
        assert loading.local_model_dir(cache_root) == target
    assert len(converted) == 1 and "damaged (tokenizer.json: not valid JSON); converting it again" in caplog.text
    assert loading.local_model_cached(cache_root)
    assert loading.local_model_dir(cache_root) == target and len(converted) == 1  # whole now: not again
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp dir left


# ----------------------------------------------------------------------------- 6. bad evaluation data
BIG = "x " * 70_000  # 140 KB


@pytest.mark.parametrize(
    ("where", "content", "expect"),
    [
        ("qrels", b"q1\td1\t\xff\xfe\n", "qrels/test.tsv:13: not valid UTF-8"),
        ("qrels", b"q\xff1\td1\t1\n", "qrels/test.tsv:13: not valid UTF-8"),
        ("qrels", b"q1\td1\tinf\n", "qrels/test.tsv:13: score: expected an integer grade, got 'inf'"),
        ("qrels", b"q1\td1\tnan\n", "qrels/test.tsv:13: score: expected an integer grade, got 'nan'"),
        ("qrels", b"q1\td1\t1e400\n", "qrels/test.tsv:13: score: expected an integer grade"),
        ("qrels", b"q1\td1\t2.5\n", "qrels/test.tsv:13: score: expected an integer grade, got '2.5'"),
        ("qrels", b"q1\td1\thigh\n", "qrels/test.tsv:13: score: expected an integer grade, got 'high'"),
        ("corpus", json.dumps({"_id": "big", "title": "", "text": BIG}).encode() + b"\n", "corpus.jsonl:15: text: 140,000 bytes, over the 131,072-byte limit"),
        ("corpus", json.dumps({"_id": "big", "title": BIG, "text": "t"}).encode() + b"\n", "corpus.jsonl:15: title: 140,000 bytes"),
        ("queries", json.dumps({"_id": "big", "text": BIG}).encode() + b"\n", "queries.jsonl:9: text: 140,000 bytes"),
        ("sts", b'{"sentence1": "a", "sentence2": "b", "score": NaN}\n', "sts.jsonl:11: score: expected a finite number, got NaN"),
        ("sts", b'{"sentence1": "a", "sentence2": "b", "score": -Infinity}\n', "sts.jsonl:11: score: expected a finite number, got -Infinity"),
        ("sts", b'{"sentence1": "a", "sentence2": "b", "score": 1e400}\n', "sts.jsonl:11: score: expected a finite number, got 1e400"),
        ("sts", b'{"sentence1": NaN, "sentence2": "b", "score": 1}\n', "sts.jsonl:11: not valid JSON"),
        ("sts", b'{"sentence1": "a", "sentence2": "b", "score": "3"}\n', "sts.jsonl:11: score: expected a finite number"),
        ("sts", json.dumps({"sentence1": BIG, "sentence2": "b", "score": 1}).encode() + b"\n", "sts.jsonl:11: sentence1: 140,000 bytes"),
    ],
)  # fmt: skip
def test_bad_eval_data_is_exit_2_naming_file_line_field(beir, sts, tiny, where, content, expect, cache):
    files = {"qrels": beir / "qrels" / "test.tsv", "corpus": beir / "corpus.jsonl", "queries": beir / "queries.jsonl",
             "sts": sts}  # fmt: skip
    with files[where].open("ab") as fp:
        fp.write(content)
    data = ["--sts", str(sts)] if where == "sts" else ["--beir", str(beir)]
    line = fails_before_torch(["eval", "-m", str(tiny), *data])
    assert expect in line, line


def test_the_field_limit_is_a_named_constant():
    from mghkit.evaluation.data import MAX_FIELD_BYTES

    assert MAX_FIELD_BYTES == 128 * 1024


# ----------------------------------------------------------------------------- 7. options checked before anything loads
@pytest.mark.parametrize(
    ("option", "expect"),
    [
        (["--lora-r", "0"], "--lora-r must be >= 1, got 0"),
        (["--lora-alpha", "0"], "--lora-alpha must be >= 1, got 0"),
        (["--lora-dropout", "2.0"], "--lora-dropout must be in [0, 1), got 2.0"),
        (["--lora-dropout", "-0.1"], "--lora-dropout must be in [0, 1)"),
        (["--lora-dropout", "nan"], "--lora-dropout must be in [0, 1), got nan"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--lr", "-1"], "--lr must be a number > 0, got -1.0"),
        (["--lr", "inf"], "--lr must be a number > 0, got inf"),
        (["--temperature", "0"], "--temperature must be a number > 0, got 0.0"),
        (["--warmup-steps", "-1"], "--warmup-steps must be >= 0"),
        (["--weight-decay", "-1"], "--weight-decay must be a number >= 0"),
        (["--max-grad-norm", "-1"], "--max-grad-norm must be a number >= 0"),
        (["--keep-checkpoints", "-1"], "--keep-checkpoints must be >= 0"),
        (["--stop-after", "0"], "--stop-after must be >= 1"),
        (["--max-length", "2"], "--max-length must be >= 4"),
        (["--base-model", ""], "--base-model: expected a model name or dir, got ''"),
        (["--base-model", "/no/such/model"], "no such model dir"),
        (["--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["--pooling", "max"], "unknown pooling 'max'"),
        (["--device", "gpu0"], "--device 'gpu0': not a torch device"),
        (["--out", ""], "--out: expected a run directory"),
    ],
)
def test_train_options_fail_before_torch_and_before_the_run_dir(option, expect, curriculum, tiny, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(curriculum), "--base-model", str(tiny), "--out", str(run), *option]
    assert expect in fails_before_torch(args)
    assert not run.exists()


@pytest.mark.parametrize(
    ("option", "expect"),
    [
        (["--model", ""], "--model: expected a model name or dir, got ''"),
        (["--model", "  "], "--model: expected a model name or dir"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--max-length", "0"], "--max-length must be >= 1"),
        (["--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["--device", "gpu0"], "not a torch device"),
        (["--pooling", "max"], "unknown pooling 'max'"),
    ],
)
def test_eval_options_fail_before_torch(option, expect, sts, tiny, tmp_path, cache):
    model = [] if option[0] == "--model" else ["--model", str(tiny)]
    out = tmp_path / "r.json"
    assert expect in fails_before_torch(["eval", *model, "--sts", str(sts), "--out", str(out), *option])
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "stdin", "expect"),
    [
        (["--model", ""], b"text\n", "--model: expected a model name or dir, got ''"),
        ([], b"fine\nab\xff\xfecd\n", "<stdin>:2: not valid UTF-8"),
        (["-"], b"\xc3\n", "<stdin>:1: not valid UTF-8"),
        (["--pooling", "max"], b"x\n", "unknown pooling 'max'"),
    ],
)
def test_pool_inspect_input_fails_before_torch(args, stdin, expect, tiny):
    model = [] if "--model" in args else ["--model", str(tiny)]
    assert expect in fails_before_torch(["pool-inspect", *model, *args], stdin=stdin)


def test_pool_inspect_argument_that_is_not_utf8(tiny):
    r = subprocess.run([PY, "-m", "mghkit", "pool-inspect", "--model", str(tiny), b"ab\xffcd"], capture_output=True,
                       timeout=120, cwd=REPO)  # fmt: skip
    assert r.returncode == 2 and error_lines(r) == ["mghkit: error: text 1: not valid UTF-8"]


# ----------------------------------------------------------------------------- 8. signals during training
def _latest(run: Path) -> int:
    steps = sorted((run / "checkpoints").glob("step-??????")) if (run / "checkpoints").is_dir() else []
    return int(steps[-1].name[5:]) if steps else 0


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while _latest(run) < step:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"step {step} never came"
        time.sleep(0.02)


def _check_run_dir(run: Path) -> int:
    """Every visible checkpoint is whole and metrics.jsonl parses; returns the latest step."""
    steps = sorted((run / "checkpoints").glob("step-??????"))
    assert steps, list((run / "checkpoints").iterdir())
    for ckpt in steps:
        names = sorted(p.name for p in ckpt.iterdir())
        assert names == ["optimizer.pt", "rng-rank0.pt", "scheduler.pt", "state.json", "trainable.pt"], (ckpt, names)
        assert json.loads((ckpt / "state.json").read_text())["step"] == int(ckpt.name[5:])
    for name in ("training_args.json", "lineage.json"):
        json.loads((run / name).read_text())
    return int(steps[-1].name[5:])


def test_sigterm_and_kill_9_during_training_leave_a_run_that_resumes(curriculum, tiny, tmp_path, cache):
    run = tmp_path / "run"
    args = [PY, "-m", "mghkit", "train", str(curriculum), "--base-model", str(tiny), "--out", str(run),
            "--steps", "60", "--batch-size", "2", "--save-every", "1", "--keep-checkpoints", "2", "--threads", "1",
            "--lora-dropout", "0"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    _wait_for_step(run, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and error_lines(subprocess.CompletedProcess(args, 143, b"", err)) == [
        "mghkit: error: terminated"
    ]
    first = _check_run_dir(run)
    assert not (run / "mghkit_model.json").exists()  # not a model until the last step

    proc = subprocess.Popen([*args, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    _wait_for_step(run, first + 2, proc)
    proc.kill()  # kill -9: no handler runs at all
    proc.communicate(timeout=60)
    second = _check_run_dir(run)
    assert second >= first + 2

    r = subprocess.run([*args, "--resume"], capture_output=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()
    assert "60 steps, final loss" in r.stderr.decode()
    assert _check_run_dir(run) == 60
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 61))  # every step once, none lost or repeated
    assert (run / "mghkit_model.json").is_file() and (run / "adapter" / "adapter_config.json").is_file()
    assert not [p for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))]
