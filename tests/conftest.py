"""Shared fixtures. Tests read nothing outside the repository and never touch the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m mghkit ARGS`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mghkit", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli():
    return run_cli


def run_main(*args: str, stdin: bytes = b"", capfd=None) -> int:
    """Run the CLI entry point ``mghkit.cli.main`` in this process; returns the exit code.
    Read stdout/stderr with pytest's ``capfd``/``capsys`` fixture."""
    import io

    from mghkit.cli import main

    old_argv, old_stdin = sys.argv, sys.stdin
    sys.argv = ["mghkit", *args]
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        main()
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.stdin = old_argv, old_stdin


def make_triplet(query: str, i: int = 0, **extra) -> dict:
    """A well-formed triplet record whose texts are distinct from every other index ``i``."""
    levels = ["high", "medium", "medium-low", "low"]
    words = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "islet", "jasper"]

    def text(kind: str, off: int) -> str:
        return f"{kind} number {i}: " + " ".join(f"{words[(i + k * off) % 10]}{k}{off}" for k in range(1, 9))

    return {
        "query": query,
        "positive_example": text("answer", 1),
        "hard_negative_examples": [{"similarity_level": lv, "text": text(lv, n + 2)} for n, lv in enumerate(levels)],
        **extra,
    }
