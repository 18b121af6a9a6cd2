"""The wheel ships what a non-editable install needs: prompts/ (as mghkit/prompts) and the bundled data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mghkit.prompts import load_template

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_prompts_and_eval_data(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    (wheel,) = tmp_path.glob("mghkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for prompt in (REPO / "prompts").glob("*.txt"):
        assert f"mghkit/prompts/{prompt.name}" in names
    assert "mghkit/data/eval/manpages-retrieval/corpus.jsonl" in names
    assert "mghkit/data/eval/simlex999-sts/test.jsonl" in names
    assert "mghkit/data/eval/README.md" in names  # provenance travels with the data


def test_templates_load_from_the_source_tree():
    assert load_template("generate.txt").sha
