"""`mghkit brainstorm` / `mghkit generate` as a user runs them: bad input (one line, exit 2, no
call), a missing key, kill -9 mid-run then rerun (no duplicate, no loss)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mghkit.schema import Task
from tests.conftest import REPO


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the CLI entry point in-process (fast: no interpreter start, LiteLLM imported once)."""
    from mghkit.cli import main

    monkeypatch.setattr(sys, "argv", ["mghkit", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


GOOD = json.dumps(Task(kind="sts", task="Find sentences with the same meaning").to_json())


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (GOOD + "\n" + GOOD[:25], "tasks.jsonl:2: not valid JSON"),  # truncated last line
        ("this is not json\n", "tasks.jsonl:1: not valid JSON"),
        ('{"kind": "sts", "task": 42}\n', "tasks.jsonl:1: task: "),
        ('{"kind": "sideways", "task": "x"}\n', "tasks.jsonl:1: kind: "),
        ('{"task": "Find x"}\n', "tasks.jsonl:1: kind: missing field"),
        ('{"kind": "sts"}\n', "tasks.jsonl:1: task: missing field"),
        ('{"kind": "sts", "task": "   "}\n', "tasks.jsonl:1: task: expected a non-empty"),
        ("[1, 2]\n", "tasks.jsonl:1: expected a JSON object"),
        (b"\x00\xff\xfe\x80garbage\n", "tasks.jsonl:1: not valid UTF-8"),
        ("", "tasks.jsonl: no tasks"),
        ("\n\n", "tasks.jsonl: no tasks"),
        (GOOD + "\n" + GOOD + "\n", "tasks.jsonl:2: id: duplicate task id"),
    ],
    ids=[
        "truncated",
        "not-json",
        "wrong-type",
        "bad-kind",
        "no-kind",
        "no-task",
        "blank-task",
        "array",
        "binary",
        "empty",
        "blank-lines",
        "duplicate",
    ],
)
def test_bad_task_file_is_one_line_exit_2_before_any_call(content, expect, server, tmp_path, monkeypatch, capsys):
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "t.jsonl"
    code, stdout, err = run_main(
        ["generate", str(path), "--model", "openai/fake", "--api-base", server.url, "--out", str(out)],
        monkeypatch,
        capsys,
    )
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expect in err and "Traceback" not in err
    assert server.count == 0 and stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["generate", "{missing}", "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1"], "no such file"),
        (["generate", "{tasks}", "--per-task", "0", "--model", "local"], "--per-task"),
        (["generate", "{tasks}", "--concurrency", "zero"], "--concurrency"),
        (
            [
                "generate",
                "{tasks}",
                "--model",
                "openai/x",
                "--api-base",
                "http://127.0.0.1:9/v1",
                "--max-retries",
                "-1",
            ],
            "--max-retries",
        ),
        (["brainstorm", "--kinds", "short-long,diagonal", "--model", "local"], "unknown kind 'diagonal'"),
        (["brainstorm", "--n-tasks", "0", "--model", "local"], "--n-tasks"),
    ],
)
def test_bad_options_are_one_line_exit_2(args, expect, tmp_path, monkeypatch, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(GOOD + "\n")
    args = [a.format(missing=tmp_path / "nope.jsonl", tasks=tasks) for a in args]
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and expect in err, err


def test_no_key_for_gpt4o_fails_at_once_with_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(GOOD + "\n")
    for args in (["generate", str(tasks)], ["brainstorm", "--n-tasks", "3"]):
        code, out, err = run_main(args, monkeypatch, capsys)
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and "OPENAI_API_KEY" in err and "--model local" in err


def test_brainstorm_then_generate_through_stdout(server, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(
        [
            "brainstorm",
            "--model",
            "openai/fake",
            "--api-base",
            server.url,
            "--n-tasks",
            "7",
            "--kinds",
            "short-long,sts",
            "--per-call",
            "3",
            "--seed",
            "7",
            "--out",
            "-",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    tasks = [Task.model_validate_json(line) for line in out.splitlines()]
    assert len(tasks) == 7 and [t.kind for t in tasks].count("short-long") == 4
    assert "brainstorm: 7 tasks" in err and "requests" in err
    (tmp_path / "tasks.jsonl").write_text(out)
    code, out, err = run_main(
        [
            "generate",
            str(tmp_path / "tasks.jsonl"),
            "--model",
            "openai/fake",
            "--api-base",
            server.url,
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert len(out.splitlines()) == 7 and "generate: 7 new triplets" in err


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_9_mid_run_then_rerun_completes_without_duplicates(server, tmp_path):
    n = 40
    with (tmp_path / "tasks.jsonl").open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(Task(kind="short-long", task=f"Retrieve passages of type {i} given a query").to_json())
                + "\n"
            )
    server.latency = 0.1
    out = tmp_path / "t.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "mghkit",
        "generate",
        str(tmp_path / "tasks.jsonl"),
        "--model",
        "openai/fake",
        "--api-base",
        server.url,
        "--out",
        str(out),
        "--concurrency",
        "4",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while _count_lines(out) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written_before = _count_lines(out)
    assert 10 <= written_before < n
    sent_before = server.count

    r = subprocess.run(cmd, capture_output=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert b"resuming" in r.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(ids) == n and len(set(ids)) == n
    # nothing already written was asked for again; at most the in-flight ones were re-sent
    assert server.count - sent_before <= n - written_before
