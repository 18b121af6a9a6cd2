"""The CLI shell: help for every command, lazy imports, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_cli

COMMANDS = ["brainstorm", "generate", "validate", "curriculum", "train", "pool-inspect", "eval"]
HEAVY = ["torch", "transformers", "litellm", "peft", "mteb"]


def test_top_help_lists_the_seven_commands():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for c in COMMANDS:
        assert c in out


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_heavy_library(command):
    args = ["--help"] if command is None else [command, "--help"]
    code = (
        f"import sys\nsys.argv = ['mghkit', *{args!r}]\nfrom mghkit.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\nassert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Usage" in r.stdout


def test_unknown_command_is_one_line_exit_2():
    r = run_cli("frobnicate")
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "frobnicate" in err
    assert b"Traceback" not in r.stderr


def test_unknown_option_is_one_line_exit_2():
    r = run_cli("validate", "-", "--no-such-option")
    assert r.returncode == 2
    assert len(r.stderr.decode().strip().splitlines()) == 1
