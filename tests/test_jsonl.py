"""Streaming JSONL: line errors with numbers, stdin, atomic and append writers, repair_tail."""

from __future__ import annotations

import io
import json
import sys

import pytest

from mghkit.errors import InputError, UsageError
from mghkit.jsonl import (
    JsonlWriter,
    check_distinct_outputs,
    iter_lines,
    read_records,
    repair_tail,
    write_json_atomic,
)
from mghkit.schema import Triplet
from tests.conftest import make_triplet


def test_iter_lines_numbers_every_line_and_skips_blank_ones():
    data = b'{"a": 1}\n\n  \n{"b": 2}\n'
    assert [(x.lineno, x.obj) for x in iter_lines(io.BytesIO(data))] == [(1, {"a": 1}), (4, {"b": 2})]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"a": ', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b'"text"', "expected a JSON object, got string"),
        (b"\xff\xfe\x00\x01", "not valid UTF-8 (binary data?)"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": "\\ud800"}', "not valid JSON"),  # a lone surrogate could not be written back as UTF-8
    ],
)
def test_bad_lines_are_reported_not_raised(line, error):
    lines = list(iter_lines(io.BytesIO(b'{"ok": 1}\n' + line + b'\n{"ok": 2}\n')))
    assert [x.lineno for x in lines] == [1, 2, 3]
    assert lines[1].obj is None and lines[1].error == error
    assert lines[2].obj == {"ok": 2}


def test_over_long_line_is_skipped_with_its_size():
    data = b'{"a": "' + b"x" * 5000 + b'"}\n{"b": 1}\n'
    lines = list(iter_lines(io.BytesIO(data), max_line_bytes=1000))
    assert lines[0].obj is None and "5,010 bytes" in lines[0].error
    assert lines[1].obj == {"b": 1}


def test_last_line_without_newline_is_read():
    assert [x.obj for x in iter_lines(io.BytesIO(b'{"a": 1}\n{"a": 2}'))] == [{"a": 1}, {"a": 2}]


def test_read_records_names_file_line_and_field(tmp_path):
    p = tmp_path / "t.jsonl"
    bad = make_triplet("q", 1)
    bad["positive_example"] = 7
    p.write_text(json.dumps(make_triplet("q", 0)) + "\n" + json.dumps(bad) + "\n")
    records = read_records(p, Triplet)
    assert next(records)[0] == 1
    with pytest.raises(InputError) as e:
        next(records)
    assert str(e.value).startswith(f"{p}:2: positive_example: ")


def test_missing_file_and_directory_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        list(iter_lines(tmp_path / "nope.jsonl"))
    with pytest.raises(UsageError, match="is a directory"):
        list(iter_lines(tmp_path))


def test_stdin_dash(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"x": 1}\n')))
    assert [x.obj for x in iter_lines("-")] == [{"x": 1}]


def test_atomic_writer_replaces_on_success(tmp_path):
    p = tmp_path / "out.jsonl"
    with JsonlWriter(p) as w:
        w.write({"a": "é"})
        w.write(Triplet.model_validate(make_triplet("q", 1)))
        assert not p.exists()  # nothing visible until the end
    rows = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"a": "é"} and rows[1]["query"] == "q"
    assert list(tmp_path.iterdir()) == [p]


def test_atomic_writer_leaves_existing_file_untouched_on_failure(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text('{"old": true}\n')
    with pytest.raises(RuntimeError), JsonlWriter(p) as w:
        w.write({"new": 1})
        raise RuntimeError("boom")
    assert p.read_text() == '{"old": true}\n'
    assert list(tmp_path.iterdir()) == [p]  # the temp file is gone


def test_writer_refuses_missing_folder(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        JsonlWriter(tmp_path / "no" / "out.jsonl")


def test_append_writer_repairs_a_torn_last_line(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2')  # a kill -9 in the middle of a line
    with JsonlWriter(p, mode="append") as w:
        w.write({"a": 3})
    assert [json.loads(x) for x in p.read_text().splitlines()] == [{"a": 1}, {"a": 3}]


@pytest.mark.parametrize(
    ("content", "removed", "left"),
    [(b"", 0, b""), (b'{"a": 1}\n', 0, b'{"a": 1}\n'), (b'{"a"', 4, b""), (b'{"a": 1}\n{"b', 3, b'{"a": 1}\n')],
)
def test_repair_tail(tmp_path, content, removed, left):
    p = tmp_path / "f.jsonl"
    p.write_bytes(content)
    assert repair_tail(p) == removed
    assert p.read_bytes() == left


def test_write_json_atomic(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"n": 1})
    assert json.loads(p.read_text()) == {"n": 1}
    with pytest.raises(UsageError):
        write_json_atomic(tmp_path / "missing" / "r.json", {})


def test_check_distinct_outputs(tmp_path):
    check_distinct_outputs("-", out="-", rejects=str(tmp_path / "r.jsonl"))
    with pytest.raises(UsageError, match="same as the input"):
        check_distinct_outputs(str(tmp_path / "a.jsonl"), out=str(tmp_path / "a.jsonl"))
    with pytest.raises(UsageError, match="same as --out"):
        check_distinct_outputs("in", out="x.jsonl", rejects="./x.jsonl")
