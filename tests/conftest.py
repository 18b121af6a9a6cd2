"""Shared fixtures. Tests never read ../shared and never touch the network."""

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


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m mghkit ARGS`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mghkit", *args],
        input=stdin, capture_output=True, cwd=cwd, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli():
    return run_cli
