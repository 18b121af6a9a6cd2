"""The front door: `import mghkit` (light, lazy, every public name resolves) and the `mghkit`
command (help for every command without heavy imports, --version, one-line errors), plus the
README's Python example, run as written."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import mghkit
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parent.parent
PIPELINE = ["brainstorm", "generate", "validate", "curriculum", "train", "pool-inspect", "eval"]
HEAVY = ["torch", "transformers", "litellm", "peft", "mteb"]


def _python(code: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO)  # fmt: skip


def _commands() -> list[str]:
    import typer

    from mghkit.cli import app

    group = typer.main.get_command(app)
    return list(group.list_commands(group.context_class(group, info_name="mghkit")))


COMMANDS = _commands()


# ---------------------------------------------------------------- import mghkit


def test_import_mghkit_imports_no_heavy_library():
    r = _python(f"""
        import sys
        import mghkit
        mghkit.__version__, dir(mghkit)
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        assert not heavy, heavy
    """)
    assert r.returncode == 0, r.stderr


def test_records_and_errors_stay_light():
    """The names a validate-only user touches resolve without a heavy import."""
    r = _python(f"""
        import sys
        import mghkit
        for name in ["Task", "Triplet", "HardNegative", "Example", "Reject", "RejectReason", "LEVELS",
                     "read_jsonl", "write_jsonl", "MghkitError", "UsageError", "InputError", "RuntimeFailure"]:
            getattr(mghkit, name)
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        assert not heavy, heavy
    """)
    assert r.returncode == 0, r.stderr


def test_all_is_what_dir_shows_and_unknown_names_fail():
    assert "__version__" in mghkit.__all__
    assert sorted(mghkit.__all__) == dir(mghkit)
    assert len(set(mghkit.__all__)) == len(mghkit.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        mghkit.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", [n for n in mghkit.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    value = getattr(mghkit, name)
    assert not isinstance(value, types.ModuleType), f"mghkit.{name} is a module"
    if name[0].islower():
        assert callable(value), f"mghkit.{name} should be a function"
        assert value.__doc__, f"mghkit.{name} has no docstring"


def test_public_functions_stay_functions_after_importing_every_submodule():
    """A submodule named like a public function would rebind `mghkit.<name>` to the module when
    imported; check both orders: names first, then every submodule, and submodules first."""
    r = _python("""
        import importlib, pkgutil, sys, types
        import mghkit

        def check(when):
            bad = [n for n in mghkit.__all__ if isinstance(getattr(mghkit, n), types.ModuleType)]
            assert not bad, f"{when}: module instead of function: {bad}"

        check("before")
        names = [m.name for m in pkgutil.walk_packages(mghkit.__path__, "mghkit.")
                 if not m.name.endswith("__main__")]
        for name in names:
            importlib.import_module(name)
        assert len(names) > 20, names
        check("after importing every submodule")
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _python("""
        import importlib, pkgutil, types
        import mghkit
        for m in pkgutil.walk_packages(mghkit.__path__, "mghkit."):
            if not m.name.endswith("__main__"):
                importlib.import_module(m.name)
        bad = [n for n in mghkit.__all__ if isinstance(getattr(mghkit, n), types.ModuleType)]
        assert not bad, bad
    """)
    assert r.returncode == 0, r.stderr[-3000:]


# ---------------------------------------------------------------- the mghkit command


def test_the_seven_pipeline_commands_exist():
    assert set(PIPELINE) <= set(COMMANDS), COMMANDS


def test_top_help_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for c in COMMANDS:
        assert c in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0, r.stderr.decode()
    assert f"Usage: mghkit {command}" in r.stdout.decode()
    assert "--help" in r.stdout.decode()
    assert r.stderr == b""


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


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    r = run_cli(flag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"mghkit {mghkit.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", mghkit.__version__)


def test_unknown_command_is_exactly_one_line_exit_2():
    r = run_cli("frobnicate")
    assert r.returncode == 2
    assert r.stderr.decode() == "mghkit: error: No such command 'frobnicate'.\n"
    assert r.stdout == b""


def test_unknown_option_is_one_line_exit_2():
    r = run_cli("validate", "-", "--no-such-option")
    assert r.returncode == 2
    err = r.stderr.decode()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("mghkit: error: ") and err.count("mghkit:") == 1
    assert "--no-such-option" in err and b"Traceback" not in r.stderr


# ---------------------------------------------------------------- the README's Python example


def readme_example() -> str:
    """The ```python block under the README's "## From Python" heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's 'From Python' section should hold one python block"
    return blocks[0]


def test_readme_example_uses_only_public_names():
    code = readme_example()
    tree = ast.parse(code)
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "mghkit"}  # fmt: skip
    assert used, "the example should use the front door"
    assert used <= set(mghkit.__all__), used - set(mghkit.__all__)
    assert len(code.strip().splitlines()) <= 12, "keep the README example about 10 lines"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_readme_example_runs_as_written(tmp_path):
    """Runs the README's example in a fresh directory, with the embedded models (minutes on 2 cores)."""
    script = tmp_path / "readme_example.py"
    script.write_text(readme_example() + "\nprint('README-EXAMPLE-OK')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=3500,
                       env=env)  # fmt: skip
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert "README-EXAMPLE-OK" in r.stdout
    assert (tmp_path / "runs" / "readme").is_dir()
