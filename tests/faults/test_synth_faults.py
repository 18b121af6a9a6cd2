"""brainstorm and generate under faults, as a user runs them: real ``python -m mghkit``
subprocesses against the loopback fake LLM server (tests/fakeserver.py), real FIFOs, /dev/full,
a disk that fills up (a tiny tmpfs in a private mount namespace), a read-only folder (the child
runs as nobody), a damaged response cache and a closed stdout.

What the commands promise: an output never destroys an input or a device; one
writer per output; a dry run changes nothing; every failure is one line; an answer paid for is
kept in the response cache, so a rerun never pays for it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mghkit.files import is_special
from mghkit.llm.cache import CACHE_FILE, ResponseCache
from mghkit.schema import Task
from tests.conftest import REPO
from tests.fakeserver import FakeLLMServer, default_responder, prompt_of
from tests.faults.conftest import unprivileged

PY = sys.executable
N = 12  # tasks in the task file: one request each


# ----------------------------------------------------------------------------- helpers
def one_line(err: bytes) -> str:
    """The one `mghkit: error:` line of stderr (progress bars aside), with no traceback or noise."""
    text = err.decode()
    for noise in ("Traceback", "never awaited", "Exception ignored", "Task was destroyed"):
        assert noise not in text, text
    lines = [line for line in text.splitlines() if line.startswith("mghkit: error: ")]
    assert len(lines) == 1, text
    return lines[0]


def quiet(err: bytes) -> str:
    text = err.decode()
    for noise in ("Traceback", "never awaited", "Exception ignored", "Task was destroyed", "mghkit: error"):
        assert noise not in text, text
    return text


def write_tasks(path: Path, n: int = N) -> Path:
    kinds = ["short-long", "long-short", "long-long", "short-short", "sts"]
    path.write_text("".join(json.dumps(Task(kind=kinds[i % 5], task=f"Retrieve items of sort {i} given a question")
                                       .to_json()) + "\n" for i in range(n)))  # fmt: skip
    return path


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def llm(server: FakeLLMServer, cache: Path) -> list[str]:
    return ["--model", "openai/fake", "--api-base", server.url, "--cache-dir", str(cache), "--max-retries", "1"]


def mghkit(*args: str, prefix: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess[bytes]:
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 180)
    return subprocess.run([*prefix, PY, "-m", "mghkit", *args], cwd=REPO, **kw)


def sidecars(folder: Path) -> list[str]:
    """Lock and temp files left in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".lock", ".tmp")))


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def tasks(tmp_path) -> Path:
    return write_tasks(tmp_path / "tasks.jsonl")


# ----------------------------------------------------------------------------- 1. an output that is an input
def test_an_output_that_names_the_input_is_refused_before_anything(server, tasks, tmp_path):
    (tmp_path / "link.jsonl").symlink_to(tasks)
    os.link(tasks, tmp_path / "hard.jsonl")
    before = tasks.read_bytes()
    cases = [(["--out", str(tasks)], "--out"),
             (["--out", str(tmp_path / "link.jsonl")], "--out"),
             (["--out", str(tmp_path / "hard.jsonl")], "--out"),
             (["--out", str(tmp_path / "t.jsonl"), "--rejects", str(tasks)], "--rejects"),
             (["--out", str(tmp_path / "t.jsonl"), "--rejects", str(tmp_path / "hard.jsonl")], "--rejects"),
             (["--out", "-", "--rejects", "-"], "--rejects -"),
             (["--out", "/dev/stdout", "--rejects", "-"], "--rejects -")]  # fmt: skip
    for args, says in cases:
        r = mghkit("generate", str(tasks), *llm(server, tmp_path / "c"), *args)
        assert r.returncode == 2 and says in one_line(r.stderr) and "give each output its own file" in r.stderr.decode()
        assert r.stdout == b""
    assert server.count == 0 and tasks.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.jsonl", "link.jsonl", "tasks.jsonl"]


# ----------------------------------------------------------------------------- 2. devices and FIFOs stay devices
def _drain(path: Path, into: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as f:
            into.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_devices_and_fifos_are_written_through_and_never_read_back(server, tasks, tmp_path):
    assert is_special("/dev/stdout"), "files.is_special must see /dev/stdout as a stream (else it gets replaced)"
    cache = tmp_path / "c"
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", "/dev/null", "--rejects", "/dev/null")
    assert r.returncode == 0 and f"{N} new triplets" in quiet(r.stderr)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _drain(fifo, got)
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(fifo))
    reader.join(30)
    assert r.returncode == 0 and f"{N} new triplets" in quiet(r.stderr) and "resuming" not in r.stderr.decode()
    assert len(got[0].splitlines()) == N
    got = []
    reader = _drain(fifo, got)
    r = mghkit("brainstorm", *llm(server, cache), "--n-tasks", "5", "--out", str(fifo))
    reader.join(30)
    assert r.returncode == 0 and len(got[0].splitlines()) == 5, r.stderr
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(fifo), "--dry-run", timeout=60)  # no reader
    assert r.returncode == 0 and f"{N} requests ({N} planned, 0 already done)" in quiet(r.stderr)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

    # /dev/stdout redirected to a file that already holds lines: written through (appended), not
    # read back for resume, never replaced by a regular file
    out = tmp_path / "redirected.jsonl"
    out.write_text('{"id": "earlier"}\n')
    with out.open("ab") as fp:
        r = mghkit("generate", str(tasks), *llm(server, cache), "--out", "/dev/stdout", stdout=fp,
                   stderr=subprocess.PIPE, capture_output=False)  # fmt: skip
    assert r.returncode == 0 and "resuming" not in quiet(r.stderr)
    assert len(ids(out)) == N + 1
    with out.open("wb") as fp:
        r = mghkit("brainstorm", *llm(server, cache), "--n-tasks", "5", "--out", "/dev/stdout", stdout=fp,
                   stderr=subprocess.PIPE, capture_output=False)  # fmt: skip
    assert r.returncode == 0 and len(out.read_text().splitlines()) == 5
    assert os.readlink("/dev/stdout") == "/proc/self/fd/1"
    assert sidecars(tmp_path) == [] and sidecars(Path("/dev")) == []


# ----------------------------------------------------------------------------- 3. two writers
def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.parametrize("shared", ["--out", "--rejects"])
def test_a_second_run_on_the_same_output_stops_at_once_naming_the_first(shared, tasks, tmp_path):
    go_on = threading.Event()  # the first run answers one request, then waits until the second is done
    answered = []

    def held(body: dict) -> str:
        if answered:
            go_on.wait(60)
        answered.append(1)
        return default_responder(body)

    with FakeLLMServer(held) as server:
        _two_writers(shared, server, tasks, tmp_path, go_on)


def _two_writers(shared: str, server: FakeLLMServer, tasks: Path, tmp_path: Path, go_on: threading.Event) -> None:
    first = {"--out": str(tmp_path / "t.jsonl"), "--rejects": str(tmp_path / "r.jsonl")}
    second = {**{"--out": str(tmp_path / "t2.jsonl"), "--rejects": str(tmp_path / "r2.jsonl")}, shared: first[shared]}
    a = subprocess.Popen([PY, "-m", "mghkit", "generate", str(tasks), *llm(server, tmp_path / "ca"),
                          "--concurrency", "1", *[x for kv in first.items() for x in kv]],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_for_lines(tmp_path / "t.jsonl", 1, a)
        with FakeLLMServer() as other:
            b = mghkit("generate", str(tasks), *llm(other, tmp_path / "cb"), *[x for kv in second.items() for x in kv])
            assert other.count == 0  # not one request
        go_on.set()
        line = one_line(b.stderr)
        assert b.returncode == 2 and f"(pid {a.pid})" in line and first[shared] in line, line
        assert "resuming" not in b.stderr.decode()  # the lock comes before reading what is done
        assert a.wait(120) == 0, a.stderr.read() if a.stderr else ""
    finally:
        go_on.set()
        if a.poll() is None:
            a.kill()
        a.wait()
    got = ids(tmp_path / "t.jsonl")
    assert len(got) == len(set(got)) == N and server.count == N
    assert sidecars(tmp_path) == []


def test_two_runs_sharing_one_cache_both_finish(server, tasks, tmp_path):
    server.latency = 0.02
    cache = tmp_path / "c"
    procs = [subprocess.Popen([PY, "-m", "mghkit", "generate", str(tasks), *llm(server, cache), "--concurrency", "8",
                               "--out", str(tmp_path / f"t{i}.jsonl")], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for i in range(3)]  # fmt: skip
    for p in procs:
        assert p.wait(120) == 0 and p.stderr is not None
        quiet(p.stderr.read())
    assert all(sorted(ids(tmp_path / f"t{i}.jsonl")) == sorted(ids(tmp_path / "t0.jsonl")) for i in range(3))
    before = server.count
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(tmp_path / "t3.jsonl"))
    assert r.returncode == 0 and server.count == before and f"{N} from cache" in quiet(r.stderr)


# ----------------------------------------------------------------------------- 4. resume repair, dry run
def test_a_dry_run_changes_no_file_and_a_run_repairs_only_what_is_broken(server, tasks, tmp_path):
    cache = tmp_path / "c"
    out, rejects = tmp_path / "t.jsonl", tmp_path / "r.jsonl"
    assert mghkit("generate", str(tasks), *llm(server, cache), "--out", str(out)).returncode == 0
    kept = out.read_bytes().splitlines(keepends=True)[:3]
    out.write_bytes(b"".join(kept)[:-1])  # 3 complete records, the last without its newline
    rejects.write_bytes(b'{"id": "trip-half-writ')  # a broken line: what a kill -9 leaves
    past = time.time() - 100
    for p in (out, rejects):
        os.utime(p, (past, past))
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, rejects)}
    fresh = tmp_path / "fresh-cache"
    for command in (["generate", str(tasks), "--out", str(out), "--rejects", str(rejects)],
                    ["brainstorm", "--n-tasks", "5", "--out", str(out)]):  # fmt: skip
        r = mghkit(*command, *llm(server, fresh), "--dry-run")
        assert r.returncode == 0 and "no request was sent" in quiet(r.stderr)
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, rejects)} == snapshot
    assert f"{N - 3} requests ({N} planned, 3 already done)" in mghkit(
        "generate", str(tasks), *llm(server, fresh), "--out", str(out), "--dry-run").stderr.decode()  # fmt: skip
    assert not fresh.exists() and sidecars(tmp_path) == []  # no cache created, no lock left

    sent = server.count
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(out), "--rejects", str(rejects))
    assert r.returncode == 0 and "3 were already done" in quiet(r.stderr)
    assert out.read_bytes().startswith(b"".join(kept))  # the complete last record was kept, newline added
    assert sorted(ids(out)) == sorted(set(ids(out))) and len(ids(out)) == N
    assert rejects.read_bytes() == b"" and server.count == sent  # the broken line cut; all answers cached


# ----------------------------------------------------------------------------- 5. full disk, read-only folder
def asked_twice(server: FakeLLMServer) -> list[str]:
    """Requests (prompt and seed) the server received more than once: answers paid for twice."""
    asked = Counter(json.dumps([body.get("messages"), body.get("seed")]) for body in server.requests)
    return [k for k, n in asked.items() if n > 1]


def test_a_full_device_is_one_line_and_the_paid_answers_are_kept(server, tasks, tmp_path):
    cache = tmp_path / "c"
    server.latency = 0.05
    r = mghkit("generate", str(tasks), *llm(server, cache), "--concurrency", "4", "--out", "/dev/full")
    assert r.returncode == 1 and one_line(r.stderr) == "mghkit: error: /dev/full: No space left on device"
    paid = server.count
    assert paid >= 1
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(tmp_path / "t.jsonl"))
    assert r.returncode == 0 and len(ids(tmp_path / "t.jsonl")) == N
    assert server.count == N and asked_twice(server) == []  # nothing paid for twice

    before = server.count
    r = mghkit("brainstorm", *llm(server, cache), "--n-tasks", "10", "--out", "/dev/full")
    assert r.returncode == 1 and one_line(r.stderr) == "mghkit: error: /dev/full: No space left on device"
    assert server.count > before
    r = mghkit("brainstorm", *llm(server, cache), "--n-tasks", "10", "--out", str(tmp_path / "b.jsonl"))
    assert r.returncode == 0 and len((tmp_path / "b.jsonl").read_text().splitlines()) == 10
    assert asked_twice(server) == []  # the tasks paid for came from the cache


def _tiny_disk() -> list[str]:
    """A command prefix that runs ``sh -c SCRIPT`` in a private mount namespace (where the script
    may mount a tmpfs that vanishes with it), or a skip."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a tiny tmpfs needs root and unshare")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace: {probe.stderr.decode().strip()}")
    return ["unshare", "-m", "sh", "-c"]


def _on_tiny_disk(script_args: list[str], folder: Path, keep: Path, size_kb: int,
                  seed: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """Run mghkit with ``folder`` a ``size_kb`` tmpfs (holding ``out.jsonl`` = ``seed`` first);
    afterwards out.jsonl is copied to ``keep`` (the tmpfs dies with the namespace)."""
    prefix = _tiny_disk()
    folder.mkdir(exist_ok=True)
    seed_file = folder.parent / "seed.jsonl"
    if seed is not None:
        seed_file.write_bytes(seed)
    script = (f'd="$0" keep="$1" seed="$2" py="$3"; shift 3; '
              f'mount -t tmpfs -o size={size_kb}k tmpfs "$d" || exit 99; '
              + ('cp "$seed" "$d/out.jsonl"; ' if seed is not None else "")
              + '"$py" -m mghkit "$@"; rc=$?; '
              'ls -a "$d" > "$keep.ls"; cp "$d/out.jsonl" "$keep" 2>/dev/null; exit $rc')  # fmt: skip
    return subprocess.run([*prefix, script, str(folder), str(keep), str(seed_file), PY, *script_args],
                          cwd=REPO, capture_output=True, timeout=180)  # fmt: skip


def test_a_disk_that_fills_up_mid_run(server, tasks, tmp_path):
    cache, disk, keep = tmp_path / "c", tmp_path / "disk", tmp_path / "kept.jsonl"
    tasks = write_tasks(tmp_path / "tasks.jsonl", 40)  # ~36 kB of triplets for an 8 kB disk
    r = _on_tiny_disk(["generate", str(tasks), *llm(server, cache), "--concurrency", "4",
                       "--out", str(disk / "out.jsonl")], disk, keep, 8)  # fmt: skip
    assert r.returncode == 1 and one_line(r.stderr) == f"mghkit: error: {disk}/out.jsonl: No space left on device"
    body = keep.read_bytes()
    complete = body[: body.rfind(b"\n") + 1]
    assert len(ids_of(complete)) >= 1  # every complete line written before the failure is a record
    paid = server.count
    # the rerun (on a normal disk) keeps every complete record, cuts a partial line, pays nothing twice
    out = tmp_path / "out.jsonl"
    out.write_bytes(body)
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(out))
    assert r.returncode == 0 and f"{len(ids_of(complete))} were already done" in quiet(r.stderr)
    assert len(ids(out)) == len(set(ids(out))) == 40
    assert asked_twice(server) == [] and server.count >= paid


def test_a_disk_that_fills_up_leaves_valid_jsonl_at_once(server, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 40)
    disk, keep = tmp_path / "disk", tmp_path / "kept.jsonl"
    r = _on_tiny_disk(["generate", str(tasks), *llm(server, tmp_path / "c"), "--out", str(disk / "out.jsonl")],
                      disk, keep, 8)  # fmt: skip
    assert r.returncode == 1
    assert keep.read_bytes().endswith(b"\n") and len(ids(keep)) >= 1


def ids_of(body: bytes) -> list[str]:
    return [json.loads(line)["id"] for line in body.splitlines()]


def test_brainstorm_on_a_disk_that_fills_up_keeps_the_previous_output(server, tmp_path):
    cache, disk, keep = tmp_path / "c", tmp_path / "disk", tmp_path / "kept.jsonl"
    previous = b'{"previous": "output"}\n'
    r = _on_tiny_disk(["brainstorm", *llm(server, cache), "--n-tasks", "60", "--out", str(disk / "out.jsonl")],
                      disk, keep, 8, seed=previous)  # fmt: skip
    assert r.returncode == 1 and one_line(r.stderr) == f"mghkit: error: {disk}/out.jsonl: No space left on device"
    assert keep.read_bytes() == previous
    assert [n for n in (tmp_path / "kept.jsonl.ls").read_text().split() if n.endswith((".tmp", ".lock"))] == []
    assert server.count > 0
    r = mghkit("brainstorm", *llm(server, cache), "--n-tasks", "60", "--out", str(tmp_path / "b.jsonl"))
    assert r.returncode == 0 and len((tmp_path / "b.jsonl").read_text().splitlines()) == 60
    assert asked_twice(server) == []  # every call paid for came back from the cache


@contextlib.contextmanager
def _read_only_folder() -> Iterator[tuple[list[str], Path, Path]]:
    """(a prefix that runs a child as nobody, a folder it cannot write, a folder it can), or a skip."""
    root = Path(tempfile.mkdtemp(prefix="mghkit-ro-"))  # tmp_path's parents are 0700: nobody cannot reach them
    try:
        root.chmod(0o755)
        ro, rw = root / "ro", root / "rw"
        ro.mkdir(mode=0o755)
        rw.mkdir(mode=0o777)
        rw.chmod(0o777)
        yield unprivileged(ro), ro, rw
    finally:
        shutil.rmtree(root)


def test_a_read_only_folder_is_one_line_before_any_request(server, tmp_path):
    with _read_only_folder() as (nobody, ro, rw):
        tasks = write_tasks(rw / "tasks.jsonl")
        (ro / "out.jsonl").write_text('{"previous": "output"}\n')
        env = {**os.environ, "HOME": str(rw)}
        out, new, rej = ro / "out.jsonl", ro / "new.jsonl", ro / "r.jsonl"
        for args, failing in [(["generate", str(tasks), "--out", str(out)], out),
                              (["generate", str(tasks), "--out", str(rw / "t.jsonl"), "--rejects", str(rej)], rej),
                              (["brainstorm", "--n-tasks", "5", "--out", str(out)], out),
                              (["brainstorm", "--n-tasks", "5", "--out", str(new)], new)]:  # fmt: skip
            r = mghkit(*args, *llm(server, rw / "c"), prefix=tuple(nobody), env=env)
            assert r.returncode == 1 and one_line(r.stderr) == f"mghkit: error: {failing}: Permission denied", args
        assert server.count == 0
        assert sorted(p.name for p in ro.iterdir()) == ["out.jsonl"]
        assert (ro / "out.jsonl").read_text() == '{"previous": "output"}\n'

        # a cache it cannot create, and one it cannot write: one line naming it, nothing sent
        (ro / "c").mkdir()
        ResponseCache(ro / "c" / CACHE_FILE).close()  # made by root: nobody can read it, not write it
        for cache, says in [(ro / "new-cache", f"{ro}/new-cache: Permission denied"),
                            (ro / "c", f"{ro}/c/{CACHE_FILE}: cannot open the LLM response cache")]:  # fmt: skip
            r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(rw / "t.jsonl"),
                       prefix=tuple(nobody), env=env)  # fmt: skip
            assert r.returncode == 1 and one_line(r.stderr).startswith(f"mghkit: error: {says}"), r.stderr
        assert server.count == 0


# ----------------------------------------------------------------------------- 6. a broken cache
def test_a_damaged_cache_is_moved_aside_and_the_run_goes_on(server, tasks, tmp_path):
    cache = tmp_path / "c"
    assert mghkit("generate", str(tasks), *llm(server, cache), "--out", str(tmp_path / "t0.jsonl")).returncode == 0
    db = cache / "llm-cache.sqlite3"
    good = db.read_bytes()
    for damage in ("garbage", "torn pages"):
        if damage == "garbage":
            db.write_bytes(os.urandom(20_000))
        else:  # a valid header, then pages of junk: found on the first lookup, not on opening
            db.write_bytes(good[:4096] + b"\xff" * (len(good) - 4096))
        for p in cache.glob("llm-cache.sqlite3-*"):
            p.unlink()
        broken = db.read_bytes()
        out = tmp_path / f"t-{damage.replace(' ', '-')}.jsonl"
        r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(out))
        err = r.stderr.decode()
        assert r.returncode == 0 and "Traceback" not in err and len(ids(out)) == N, err
        warnings = [line for line in err.splitlines() if "warning" in line]
        aside = sorted(cache.glob("llm-cache.sqlite3.broken-*"))[-1]
        assert len(warnings) == 1 and str(db) in warnings[0] and str(aside) in warnings[0], err
        assert aside.read_bytes() == broken  # kept for a post-mortem, not deleted
    assert len(list(cache.glob("llm-cache.sqlite3.broken-*"))) == 2
    sent = server.count
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(tmp_path / "t9.jsonl"))
    assert r.returncode == 0 and server.count == sent  # the fresh cache works


def test_a_cache_dir_that_is_a_file_is_a_bad_option(server, tasks, tmp_path):
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    for cache, env in [(afile, {}), (afile / "sub", {}), (None, {"MGHKIT_CACHE_DIR": str(afile)})]:
        for extra in ([], ["--dry-run"]):
            args = ["--model", "openai/fake", "--api-base", server.url, *(["--cache-dir", str(cache)] if cache else [])]
            r = mghkit("generate", str(tasks), *args, *extra, "--out", str(tmp_path / "t.jsonl"),
                       env={**os.environ, **env})  # fmt: skip
            line = one_line(r.stderr)
            assert r.returncode == 2 and str(afile) in line and "not a directory" in line, line
    r = mghkit("brainstorm", "--model", "openai/fake", "--api-base", server.url, "--cache-dir", str(afile))
    assert r.returncode == 2 and "not a directory" in one_line(r.stderr)
    assert server.count == 0 and afile.read_text() == "x" and not (tmp_path / "t.jsonl").exists()


# ----------------------------------------------------------------------------- 7. a closed stdout
def test_a_closed_stdout_exits_quietly_and_keeps_the_answers(server, tmp_path):
    server.latency = 0.05
    cache, tasks = tmp_path / "c", write_tasks(tmp_path / "tasks.jsonl", 40)
    p = subprocess.Popen([PY, "-m", "mghkit", "generate", str(tasks), *llm(server, cache), "--concurrency", "4",
                          "--out", "-"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()  # `| head -1`
    p.stdout.close()
    assert p.wait(120) == 0
    quiet(p.stderr.read())
    assert json.loads(first)["id"] and server.count < 40  # it stopped asking when its reader went away
    r = mghkit("generate", str(tasks), *llm(server, cache), "--out", str(tmp_path / "t.jsonl"))
    assert r.returncode == 0 and len(ids(tmp_path / "t.jsonl")) == 40
    assert asked_twice(server) == []  # what the first run paid for came from the cache


# ----------------------------------------------------------------------------- 8. no usable task
def test_brainstorm_with_no_usable_task_fails_and_writes_nothing(tmp_path):
    prev = tmp_path / "tasks.jsonl"
    prev.write_text('{"previous": "output"}\n')

    def unusable(body: dict) -> str:
        if "exactly" in prompt_of(body):
            return "I am sorry, I cannot brainstorm tasks."
        return default_responder(body)

    with FakeLLMServer(unusable) as srv:
        for out in (str(prev), "-"):
            r = mghkit("brainstorm", *llm(srv, tmp_path / "c"), "--n-tasks", "4", "--kinds", "sts", "--out", out)
            line = one_line(r.stderr)
            assert r.returncode == 1 and "no usable task in" in line and "no JSON object in the reply" in line, line
            assert r.stdout == b""
    assert prev.read_text() == '{"previous": "output"}\n' and sidecars(tmp_path) == []
