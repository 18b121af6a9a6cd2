"""Short options are the same on every command, and shell completion is on."""

from __future__ import annotations

import shlex
import subprocess
import sys

import typer.main

from mghkit.cli import app
from tests.conftest import run_cli


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_short_options_are_consistent_across_commands():
    seen = {}
    for name, command in _commands().items():
        flags = {o: p for p in command.params for o in (*p.opts, *p.secondary_opts)}  # type: ignore[attr-defined]
        seen[name] = flags
        for long, short in (("--model", "-m"), ("--out", "-o"), ("--quiet", "-q")):
            if long in flags:
                assert flags.get(short) is flags[long], f"{name}: {long} has no {short}"
    for name in ("brainstorm", "generate", "validate", "curriculum", "train", "eval"):  # commands with a summary
        assert "--quiet" in seen[name], name


def test_shell_completion_is_on_and_help_stays_light():
    # --show-completion finds the user's shell among its parent processes: run it from bash, as a
    # user does ("; true" keeps bash from exec-ing the command, so bash stays its parent) - a test
    # runner started outside any shell (CI, nohup) has none.
    cmd = f"{shlex.quote(sys.executable)} -m mghkit --show-completion; true"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=120)
    assert b"_mghkit_completion" in r.stdout, r.stderr
    r = run_cli(env={"_MGHKIT_COMPLETE": "source_bash"})  # what the installed script sources
    assert r.returncode == 0 and b"_mghkit_completion" in r.stdout, r.stderr
    r = run_cli("--help")
    assert r.returncode == 0 and b"--install-completion" in r.stdout


def test_the_shell_gets_completions_of_commands_and_options():
    """What the installed completion script asks at each <TAB>: mghkit answers (it runs the command
    outside Typer's own main, so this path must be kept by hand)."""
    r = run_cli(env={"_MGHKIT_COMPLETE": "complete_bash", "COMP_WORDS": "mghkit ge", "COMP_CWORD": "1"})
    assert r.returncode == 0 and r.stdout.split() == [b"generate"], r.stderr
    r = run_cli(env={"_MGHKIT_COMPLETE": "complete_bash", "COMP_WORDS": "mghkit validate --check", "COMP_CWORD": "2"})
    assert r.stdout.split() == [b"--check-levels"], r.stderr
