"""Output files: devices written through, umask permissions, locks, inputs never overwritten."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mghkit.errors import UsageError
from mghkit.files import OutputLock, check_distinct_outputs, seekable, write_text_atomic
from mghkit.jsonl import JsonlWriter, repair_tail


def test_new_output_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with JsonlWriter(tmp_path / "a.jsonl") as w:
            w.write({"a": 1})
        write_text_atomic(tmp_path / "r.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_replacing_keeps_the_files_mode(tmp_path):
    target = tmp_path / "a.jsonl"
    target.write_text("{}\n")
    target.chmod(0o640)
    with JsonlWriter(target) as w:
        w.write({"a": 2})
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() == '{"a":2}\n'


def test_dev_null_stays_a_device():
    with JsonlWriter("/dev/null") as w:
        w.write({"a": 1})
    write_text_atomic("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_output_is_written_through(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with JsonlWriter(fifo) as w:
        w.write({"a": 1})
    reader.join(10)
    assert got == [b'{"a":1}\n']
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    target = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mghkit.files import OutputLock; "
         f"l = OutputLock({str(target)!r}); print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"another mghkit process \\(pid {holder.pid}\\)"):
            JsonlWriter(target, mode="append")
    finally:
        holder.kill()
        holder.wait()
    with JsonlWriter(target, mode="append") as w:  # the kernel released the dead holder's lock
        w.write({"ok": True})
    assert not (tmp_path / ".out.jsonl.lock").exists()


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    with OutputLock(tmp_path / "x"), pytest.raises(UsageError, match="another mghkit process"):
        OutputLock(tmp_path / "x")


def test_outputs_may_not_be_inputs_by_any_name(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("{}\n")
    (tmp_path / "link.jsonl").symlink_to(src)
    os.link(src, tmp_path / "hard.jsonl")
    for name in ("in.jsonl", "link.jsonl", "hard.jsonl"):
        with pytest.raises(UsageError, match="same as the input"):
            check_distinct_outputs(str(src), out=str(tmp_path / name))
    check_distinct_outputs([str(src)], out="/dev/null", rejects="/dev/null")  # devices may repeat


def test_repair_tail_keeps_a_complete_last_record(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_bytes(b'{"id": 1}\n{"id": 2}')
    assert repair_tail(p) == 0
    assert p.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    p.write_bytes(b'{"id": 1}\n{"id": 2, "te')
    assert repair_tail(p) == len(b'{"id": 2, "te')
    assert p.read_bytes() == b'{"id": 1}\n'


def test_seekable_spools_a_fifo_once(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b'{"a": 1}\n'))
    writer.start()
    with seekable(fifo) as path:
        assert Path(path).read_bytes() == Path(path).read_bytes() == b'{"a": 1}\n'
    writer.join(10)
    assert not Path(path).exists()
    with seekable(tmp_path) as same:
        assert same == str(tmp_path)
