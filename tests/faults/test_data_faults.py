"""validate and curriculum under faults, with real subprocesses: outputs that name an input,
devices and FIFOs as outputs, inputs that can be read only once, signals, a closed stdout,
repeated ids, a full disk and a read-only folder. What each command promises: docs/validate.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, make_triplet, run_cli
from tests.faults.conftest import unprivileged

psutil = pytest.importorskip("psutil")

PY = sys.executable
LEVELS = ["high", "medium", "medium-low", "low"]


def one_line(err: bytes) -> str:
    """stderr that must be exactly one `mghkit: error:` line, no traceback."""
    text = err.decode()
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mghkit: error: "), text
    return lines[0]


def write_rows(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    """40 lines that need both passes: line 5's negative is line 30's positive (found only when
    every positive is known first), plus a bad line and a duplicate query."""
    rows: list[dict | str] = [make_triplet(f"question number {i} about topic {i * 7}", i) for i in range(38)]
    rows[4]["hard_negative_examples"][2]["text"] = rows[29]["positive_example"]
    rows.append("{not json")
    rows.append(make_triplet("question number 3 about topic 21", 77))
    return write_rows(tmp_path / "in.jsonl", rows)


def cli_out(*args: str, **kw) -> subprocess.CompletedProcess[bytes]:
    r = run_cli(*args, **kw)
    assert r.returncode == 0, r.stderr
    return r


def big_file(path: Path, n: int) -> Path:
    """``n`` distinct triplets (~890 bytes each), written in a second."""
    rng = random.Random(0)
    words = [f"w{i:04d}" for i in range(5000)]
    with path.open("w") as fp:
        for i in range(n):
            text = lambda k: " ".join(rng.choices(words, k=k))  # noqa: E731
            negs = [{"similarity_level": lv, "text": text(20)} for lv in LEVELS]
            fp.write(json.dumps({"query": f"q{i} {text(8)}", "positive_example": text(20),
                                 "hard_negative_examples": negs}) + "\n")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """~53 MB: over validate's 8 MB worker threshold and several seconds of work."""
    return big_file(tmp_path_factory.mktemp("big") / "big.jsonl", 60_000)


# ----------------------------------------------------------------------------- 1. outputs never destroy inputs
@pytest.mark.parametrize("option", ["--out", "--rejects", "--report", "--plot"])
@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_validate_refuses_an_output_that_is_the_input(data, tmp_path, option, alias):
    name = {"same": data, "symlink": tmp_path / "link.jsonl", "hardlink": tmp_path / "hard.jsonl"}[alias]
    if alias == "symlink":
        name.symlink_to(data)
    elif alias == "hardlink":
        os.link(data, name)
    before = data.read_bytes()
    r = run_cli("validate", str(data), option, str(name), "-q")
    assert r.returncode == 2 and f"{option} {name}: same as the input" in one_line(r.stderr)
    assert data.read_bytes() == before and r.stdout == b""


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_curriculum_refuses_an_output_that_is_the_input(data, tmp_path, alias):
    good = write_rows(tmp_path / "good.jsonl", [make_triplet(f"question {i}", i) for i in range(3)])
    name = {"same": good, "symlink": tmp_path / "link.jsonl", "hardlink": tmp_path / "hard.jsonl"}[alias]
    if alias == "symlink":
        name.symlink_to(good)
    elif alias == "hardlink":
        os.link(good, name)
    before = good.read_bytes()
    r = run_cli("curriculum", str(good), "--out", str(name), "-q")
    assert r.returncode == 2 and "same as the input" in one_line(r.stderr)
    assert good.read_bytes() == before


# ----------------------------------------------------------------------------- 2. devices stay devices
def test_dev_null_and_dev_stdout_outputs(data, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(cli_out("validate", str(data), "-q").stdout)
    for command in (["validate", str(data)], ["curriculum", str(clean)]):
        assert cli_out(*command, "--out", "/dev/null", "-q").stdout == b""
        piped = cli_out(*command, "--out", "/dev/stdout", "-q").stdout  # stdout is a pipe here
        assert piped == cli_out(*command, "-q").stdout != b""
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    r = cli_out("validate", str(data), "--out", "/dev/null", "--report", "/dev/stdout", "-q")
    assert json.loads(r.stdout)["total"] == 40


@pytest.fixture
def guard_dev_stdout() -> Iterator[None]:
    """Put /dev/stdout back if a regression turns it into a file (we run as root)."""
    yield
    if not os.path.islink("/dev/stdout") and os.geteuid() == 0:
        os.unlink("/dev/stdout")
        os.symlink("/proc/self/fd/1", "/dev/stdout")
        pytest.fail("/dev/stdout was replaced by a regular file")


def test_dev_stdout_redirected_to_a_file_is_written_through(data, tmp_path, guard_dev_stdout):
    """`--out /dev/stdout > file`: /dev/stdout stats as a regular file then; renaming a temp file
    over it used to replace /dev/stdout itself (and leave the redirected file empty)."""
    expected = cli_out("validate", str(data), "-q").stdout
    link = tmp_path / "stdout-link"
    link.symlink_to("/proc/self/fd/1")  # the same chain as /dev/stdout, in a folder of our own
    for name in ("/dev/stdout", "/dev/fd/1", str(link)):
        target = tmp_path / "redirected.jsonl"
        with target.open("wb") as fp:
            r = subprocess.run([PY, "-m", "mghkit", "validate", str(data), "-q", "--out", name], stdout=fp,
                               stderr=subprocess.PIPE, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert target.read_bytes() == expected, name
    assert os.path.islink("/dev/stdout") and link.is_symlink()
    with (tmp_path / "appended.jsonl").open("ab") as fp:  # `>>` appends, as a plain write would
        fp.write(b"first\n")
        fp.flush()
        subprocess.run([PY, "-m", "mghkit", "validate", str(data), "-q", "--out", "/dev/stdout"], stdout=fp,
                       check=True, timeout=60)  # fmt: skip
    assert (tmp_path / "appended.jsonl").read_bytes() == b"first\n" + expected


def read_fifo_in_thread(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    return reader, got


def test_fifo_outputs_are_written_through(data, tmp_path):
    expected = cli_out("validate", str(data), "-q").stdout
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    for option in ("--out", "--report"):
        reader, got = read_fifo_in_thread(fifo)
        extra = ["--out", "/dev/null"] if option == "--report" else []
        cli_out("validate", str(data), "-q", *extra, option, str(fifo), timeout=60)
        reader.join(30)
        assert got and (got[0] == expected if option == "--out" else json.loads(got[0])["clean"] == 37)
        assert stat.S_ISFIFO(fifo.stat().st_mode)
    reader, got = read_fifo_in_thread(fifo)
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(expected)
    cli_out("curriculum", str(clean), "-q", "--out", str(fifo), timeout=60)
    reader.join(30)
    assert got and got[0] == cli_out("curriculum", str(clean), "-q").stdout


PLOT_SCRIPT = """
import sys, numpy as np, mghkit
rows = [__import__("json").loads(line) for line in open(sys.argv[1])][:5]
def embed(texts):  # a stand-in embedder: no model to load
    v = np.array([[len(t) % 7 + 1.0, t.count(" ") + 1.0, 1.0] for t in texts])
    return v / np.linalg.norm(v, axis=1, keepdims=True)
mghkit.validate_triplets(rows, check_levels=True, embedder=embed, plot=sys.argv[2])
"""


def test_plot_to_devices_fifos_and_files(data, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(cli_out("validate", str(data), "-q").stdout)
    for target in ("/dev/null", "/dev/stdout"):
        r = subprocess.run([PY, "-c", PLOT_SCRIPT, str(clean), target], capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"\x89PNG") if target == "/dev/stdout" else r.stdout == b""
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "plot.fifo"
    os.mkfifo(fifo)
    reader, got = read_fifo_in_thread(fifo)
    subprocess.run([PY, "-c", PLOT_SCRIPT, str(clean), str(fifo)], check=True, timeout=120)
    reader.join(30)
    assert got and got[0].startswith(b"\x89PNG") and stat.S_ISFIFO(fifo.stat().st_mode)
    png = tmp_path / "levels.png"
    subprocess.run([PY, "-c", PLOT_SCRIPT, str(clean), str(png)], check=True, timeout=120,
                   preexec_fn=lambda: os.umask(0o022))  # fmt: skip
    assert png.read_bytes().startswith(b"\x89PNG") and stat.S_IMODE(png.stat().st_mode) == 0o644
    bare = tmp_path / "levels"  # matplotlib appends ".png" to a bare name (it made /dev/null.png)
    subprocess.run([PY, "-c", PLOT_SCRIPT, str(clean), str(bare)], check=True, timeout=120)
    assert bare.read_bytes().startswith(b"\x89PNG") and not (tmp_path / "levels.png.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clean.jsonl",
        "in.jsonl",
        "levels",
        "levels.png",
        "plot.fifo",
    ]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(data, tmp_path, umask, mode):
    outs = {"--out": tmp_path / "o.jsonl", "--rejects": tmp_path / "r.jsonl", "--report": tmp_path / "rep.json"}
    args = [x for opt, p in outs.items() for x in (opt, str(p))]
    r = subprocess.run([PY, "-m", "mghkit", "validate", str(data), "-q", *args], capture_output=True, timeout=60,
                       preexec_fn=lambda: os.umask(umask))  # fmt: skip
    assert r.returncode == 0, r.stderr
    clean = outs["--out"]
    cur = tmp_path / "c.jsonl"
    subprocess.run([PY, "-m", "mghkit", "curriculum", str(clean), "-q", "--out", str(cur)], check=True, timeout=60,
                   preexec_fn=lambda: os.umask(umask))  # fmt: skip
    for p in [*outs.values(), cur]:
        assert stat.S_IMODE(p.stat().st_mode) == mode, p
    clean.chmod(0o640)  # a replaced file keeps its own mode
    subprocess.run([PY, "-m", "mghkit", "validate", str(data), "-q", "--out", str(clean)], check=True, timeout=60)
    assert stat.S_IMODE(clean.stat().st_mode) == 0o640


# ----------------------------------------------------------------------------- 3. inputs read once
def shell(cmd: str, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=120, **kw)


@pytest.mark.parametrize("command", ["validate", "curriculum"])
def test_non_seekable_inputs_give_the_same_output(data, tmp_path, command):
    if command == "curriculum":  # valid input for curriculum
        data.write_bytes(cli_out("validate", str(data), "-q").stdout)
    spool_dir = tmp_path / "tmpdir"
    spool_dir.mkdir()
    env = {**os.environ, "TMPDIR": str(spool_dir)}
    mg = f"{PY} -m mghkit {command}"
    expected = cli_out(command, str(data), "-q").stdout
    assert len(expected.splitlines()) in (37, 148)  # validate: 37 clean (lines 5, 39 and 40 rejected)
    for how in (f"{mg} <(cat {data}) -q", f"cat {data} | {mg} /dev/stdin -q", f"cat {data} | {mg} - -q",
                f"{mg} /dev/stdin -q < {data}"):  # fmt: skip
        r = shell(how, env=env)
        assert r.returncode == 0 and r.stdout == expected, (how, r.stderr)
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data.read_bytes()), daemon=True)
    writer.start()
    r = run_cli(command, str(fifo), "-q", env={"TMPDIR": str(spool_dir)}, timeout=60)  # used to hang: read twice
    writer.join(10)
    assert r.returncode == 0 and r.stdout == expected, r.stderr
    assert list(spool_dir.iterdir()) == []  # the spool is gone


def test_a_big_stdin_is_spooled_once_and_checked_by_workers(big, tmp_path):
    small = big_file(tmp_path / "b.jsonl", 10_000)
    with small.open("ab") as fp:
        fp.write(big.read_bytes()[: 9 << 20])  # over 8 MB: the workers run on the spooled copy
    expected = cli_out("validate", str(small), "-q").stdout
    r = shell(f"cat {small} | {PY} -m mghkit validate - -q")
    assert r.returncode == 0 and r.stdout == expected


# ----------------------------------------------------------------------------- 4. signals
def start_validate(big: Path, out: Path, **kw) -> tuple[subprocess.Popen[bytes], list]:
    """Start validate on ``big`` and wait until its workers run and its temp output exists."""
    proc = subprocess.Popen([PY, "-m", "mghkit", "validate", str(big), "--out", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)  # fmt: skip
    deadline = time.monotonic() + 60
    workers: list = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = psutil.Process(proc.pid).children()
        if len(workers) >= 1 and temp_files(out):
            return proc, workers
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"validate did not start its workers (rc {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")


def temp_files(out: Path) -> list[str]:
    return sorted(
        p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.name.endswith(".tmp")
    )


def gone(procs: list, within: float) -> bool:
    """Every process dead (or a zombie: dead, waiting for the container's init to reap it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_workers_and_removes_the_temp_file(big, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"previous": "output"}\n')
    proc, workers = start_validate(big, out)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    assert rc == 143 and time.monotonic() - t0 < 10
    assert one_line(proc.stderr.read()) == "mghkit: error: terminated"  # type: ignore[union-attr]
    assert gone(workers, 5)
    assert temp_files(out) == [] and not (tmp_path / ".out.jsonl.lock").exists()
    assert out.read_text() == '{"previous": "output"}\n'


def test_ctrl_c_to_the_process_group_exits_130_without_worker_tracebacks(big, tmp_path):
    out = tmp_path / "out.jsonl"
    proc, workers = start_validate(big, out, start_new_session=True)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
    assert proc.wait(30) == 130
    assert one_line(proc.stderr.read()) == "mghkit: error: interrupted"  # type: ignore[union-attr]
    assert gone(workers, 5) and temp_files(out) == [] and not out.exists()


def test_kill_9_of_the_parent_takes_the_workers_with_it(big, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"previous": "output"}\n')
    proc, workers = start_validate(big, out)
    proc.kill()
    proc.wait(10)
    try:
        assert gone(workers, 5), [w.pid for w in workers]  # used to stay blocked on the queue forever
    finally:  # a regression must not leave orphans behind
        for w in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                w.kill()
    assert out.read_text() == '{"previous": "output"}\n'
    # documented: the dead process's temp file stays beside the output (.NAME.*.tmp)
    assert all(name.startswith(".out.jsonl.") for name in temp_files(out))


# ----------------------------------------------------------------------------- 5. a closed stdout
@pytest.mark.parametrize("command", ["validate", "curriculum"])
def test_head_closing_stdout_exits_quietly_with_0(tmp_path, command, big):
    src = big_file(tmp_path / "mid.jsonl", 5000)  # 4.5 MB of output: far over a pipe's buffer
    for path in (src, big) if command == "validate" else (src,):
        r = shell(f"{PY} -m mghkit {command} {path} --out - | head -1; exit ${{PIPESTATUS[0]}}")
        assert r.returncode == 0 and r.stderr == b"", (path, r.stderr)
        assert json.loads(r.stdout)["id"]


# ----------------------------------------------------------------------------- 6. repeated ids
def test_validate_rejects_a_repeated_id_and_curriculum_refuses_one(tmp_path):
    rows = [make_triplet(f"question {i}", i, id=f"id-{i}") for i in range(5)]
    rows[2]["id"] = "id-0"  # same id, different record
    rows[3]["hard_negative_examples"] = rows[3]["hard_negative_examples"][:3]  # rejected: too few negatives ...
    rows[3]["id"] = "id-9"
    rows.append(make_triplet("question 9", 9, id="id-9"))  # ... so this one's id is not taken
    src = write_rows(tmp_path / "in.jsonl", rows)
    rejects, report = tmp_path / "rejects.jsonl", tmp_path / "report.json"
    for dedup in ("--dedup", "--no-dedup"):
        r = cli_out("validate", str(src), dedup, "--rejects", str(rejects), "--report", str(report), "-q")
        kept = [json.loads(x)["id"] for x in r.stdout.splitlines()]
        assert kept == ["id-0", "id-1", "id-4", "id-9"]
        rej = {x["line"]: x for x in map(json.loads, rejects.read_text().splitlines())}
        assert rej[3]["reasons"] == [{"code": "duplicate_id", "field": "id", "detail": "same id as line 1"}]
        assert json.loads(report.read_text())["reasons"]["duplicate_id"] == 1
    r = run_cli("validate", str(src), "--strict")
    assert r.returncode == 2 and f"{src}:3: id: same id as line 1 (duplicate_id; --strict)" in one_line(r.stderr)
    good = write_rows(tmp_path / "good.jsonl", [make_triplet(f"question {i}", i, id=f"id-{i}") for i in range(3)] +
                      [make_triplet("question 7", 7, id="id-1")])  # fmt: skip
    r = run_cli("curriculum", str(good), "--out", str(tmp_path / "c.jsonl"))
    assert r.returncode == 2 and f"{good}:4: id: 'id-1' repeats the id of line 2" in one_line(r.stderr)
    assert not (tmp_path / "c.jsonl").exists()
    r = shell(f"{PY} -m mghkit validate {good} -q | {PY} -m mghkit curriculum - -q")  # the pipeline holds
    ids = [json.loads(x)["id"] for x in r.stdout.splitlines()]
    assert r.returncode == 0 and len(ids) == len(set(ids)) == 12


# ----------------------------------------------------------------------------- 7. a full disk, a read-only folder
def test_full_device_gives_one_line_naming_it(data, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(cli_out("validate", str(data), "-q").stdout)
    cases = [(["validate", str(data), "--out", "/dev/full"], "/dev/full"),
             (["validate", str(data), "--out", "/dev/null", "--report", "/dev/full"], "/dev/full"),
             (["validate", str(data), "--out", "/dev/null", "--rejects", "/dev/full"], "/dev/full"),
             (["curriculum", str(clean), "--out", "/dev/full"], "/dev/full")]  # fmt: skip
    for args, path in cases:
        r = run_cli(*args, "-q")
        assert r.returncode == 1 and one_line(r.stderr) == f"mghkit: error: {path}: No space left on device", args
    for command in (["validate", str(data)], ["curriculum", str(clean)]):  # stdout on a full disk
        with open("/dev/full", "wb") as full:
            r = subprocess.run([PY, "-m", "mghkit", *command, "-q"], stdout=full, stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 1 and one_line(r.stderr) == "mghkit: error: <stdout>: No space left on device"


def _small_file_limit() -> None:  # a regular file that cannot grow past 10 kB: EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_disk_that_fills_up_keeps_the_previous_output(data, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(cli_out("validate", str(data), "-q").stdout)
    out = tmp_path / "out.jsonl"
    for args in (["validate", str(data)], ["curriculum", str(clean)]):
        out.write_text('{"previous": "output"}\n')
        r = subprocess.run([PY, "-m", "mghkit", *args, "-q", "--out", str(out)], capture_output=True, timeout=60,
                           preexec_fn=_small_file_limit)  # fmt: skip
        assert r.returncode == 1 and one_line(r.stderr) == f"mghkit: error: {out}: File too large"
        assert out.read_text() == '{"previous": "output"}\n' and temp_files(out) == []


def test_read_only_folder_gives_one_line_and_keeps_the_previous_output(data):
    folder = Path(tempfile.mkdtemp(prefix="mghkit-ro-"))  # tmp_path's parents are 0700: nobody cannot reach it
    try:
        folder.chmod(0o755)
        os.chown(folder, 65534, 65534)
        prefix = unprivileged(folder)
        folder.chmod(0o555)  # nobody's folder, read-only: neither nobody nor root without its override may write
        src = folder / "in.jsonl"
        shutil.copy(data, src)
        clean = folder / "clean.jsonl"
        clean.write_bytes(cli_out("validate", str(data), "-q").stdout)
        out = folder / "out.jsonl"
        out.write_text('{"previous": "output"}\n')
        os.chmod(out, 0o444)  # the file too: under the dropped override, its owner (root) could still write it
        for args, failing in [(["validate", str(src), "--out", str(out)], out),
                              (["validate", str(src), "--out", "/dev/null", "--report", str(folder / "r.json")], folder / "r.json"),
                              (["curriculum", str(clean), "--out", str(out)], out)]:  # fmt: skip
            r = subprocess.run([*prefix, PY, "-m", "mghkit", *args, "-q"], capture_output=True, cwd=REPO, timeout=60)
            assert r.returncode == 1 and one_line(r.stderr) == f"mghkit: error: {failing}: Permission denied"
            assert out.read_text() == '{"previous": "output"}\n'
        assert sorted(p.name for p in folder.iterdir()) == ["clean.jsonl", "in.jsonl", "out.jsonl"]
    finally:
        shutil.rmtree(folder)
