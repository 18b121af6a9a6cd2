"""The docs match the code: docs/cli.md is today's --help, docs/method.md names code that exists,
every relative link in the README and docs/ resolves, and nothing refers outside the repository."""

from __future__ import annotations

import ast
import re
import runpy
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
METHOD = REPO / "docs" / "method.md"
# "[mghkit/x/y.py](../mghkit/x/y.py) `name`, `Other.method`": a file and the names it must define.
CODE_LINK = re.compile(r"\[(mghkit/[\w/]+\.py)\]\(\.\./([\w/.]+)\)((?:,?\s*(?:and\s+)?`[\w.]+`)*)")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _cli_docs() -> dict:
    return runpy.run_path(str(REPO / "scripts" / "cli_docs.py"), run_name="cli_docs")


def test_cli_reference_is_current():
    """docs/cli.md is regenerated in memory from every command's --help; run `make docs` if this fails."""
    expected = _cli_docs()["render"]()
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is stale: run `make docs` (python scripts/cli_docs.py)"


def test_cli_reference_has_every_command():
    import typer

    from mghkit.cli import app

    group = typer.main.get_command(app)
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in group.list_commands(group.context_class(group, info_name="mghkit")):
        assert f"## `mghkit {name}`" in text
        assert f"Usage: mghkit {name} " in text


@cache
def _top_level_names(path: Path) -> frozenset[str]:
    """Names a module binds at top level (defs, classes, assignments, imports) plus Class.attr."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        names.add(f"{node.name}.{item.name}")
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(f"{node.name}.{item.target.id}")
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def _code_links() -> list[tuple[str, str, list[str]]]:
    text = METHOD.read_text(encoding="utf-8")
    return [(m[1], m[2], re.findall(r"`([\w.]+)`", m[3])) for m in CODE_LINK.finditer(text)]


def test_method_links_name_code_that_exists():
    links = _code_links()
    assert len(links) >= 15, "docs/method.md should link each item to its code"
    problems = []
    for shown, target, names in links:
        if shown != target:
            problems.append(f"link text {shown} points to {target}")
        path = REPO / target
        if not path.is_file():
            problems.append(f"{target}: no such file")
            continue
        missing = [n for n in names if n not in _top_level_names(path)]
        if missing:
            problems.append(f"{target}: does not define {', '.join(missing)}")
    assert not problems, "docs/method.md:\n" + "\n".join(problems)


def test_method_has_the_five_sections_code_cites():
    headings = re.findall(r"(?m)^## (\d)\. (.+)$", METHOD.read_text(encoding="utf-8"))
    assert [n for n, _ in headings] == ["1", "2", "3", "4", "5"]
    titles = " | ".join(t.lower() for _, t in headings)
    for word in ("synthesis", "curriculum", "ata", "training", "evaluation"):
        assert word in titles


def test_method_states_the_decisions():
    text = METHOD.read_text(encoding="utf-8")
    for must in ("received", "given", "column", "row", "max(0, log((K+1) a))", "0.02", "GradCache",
                 "r 16", "alpha 32", "dropout 0.05", "2e-4", "300 warmup", "512", "1,600", "64.5", "67.0"):  # fmt: skip
        assert must in text, must


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in MD_LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_code_paths_named_in_docs_exist(page):
    """Every mghkit/... file path a page names (in prose or a link) exists."""
    text = page.read_text(encoding="utf-8")
    paths = set(re.findall(r"(?<![\w/.])(mghkit/[\w/]+\.py)\b", text))
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    """mghkit.a.b.name: the longest prefix that is a module of the repo, then names it defines."""
    import mghkit

    parts = dotted.split(".")
    if len(parts) == 2 and parts[1] in mghkit.__all__:
        return True
    for cut in range(len(parts), 1, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            rest = parts[cut:]
            return not rest or ".".join(rest[:2]) in _top_level_names(module) or rest[0] in _top_level_names(module)
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_dotted_names_in_docs_resolve(page):
    """`mghkit.x` (front door), `python -m mghkit.train.y`, `mghkit.model.encoder.load_encoder` exist."""
    text = page.read_text(encoding="utf-8")
    names = set(re.findall(r"(?<![\w/.-])(mghkit(?:\.[A-Za-z_]\w*)+)", text))
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{page.name} names modules or functions that do not exist: {missing}"


def test_readme_is_a_front_page():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 12 * 1024, "README.md over 12 KB: move reference material to docs/"
    assert "arxiv.org/abs/2509.00842" in text and "eprint        = {2509.00842}" in text
    assert "make demo" in text and "make test" in text and "--preset paper" in text
    for page in DOCS:
        if page.name != "cli.md":
            assert f"docs/{page.name}" in text, f"the README's docs index does not list docs/{page.name}"
    assert "nDCG@10" not in text, "figures live in docs/benchmarks.md and docs/eval.md; link them"


def _project_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [REPO / name for name in out.splitlines() if (REPO / name).is_file()]


def test_nothing_refers_outside_the_repository():
    # Spelled in pieces so that this file does not match itself.
    needles = ["../" + "shared", "METHOD" + ".md"]
    hits = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if any(needle in line for needle in needles):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not hits, "cite docs/method.md instead:\n" + "\n".join(hits)


def test_license_matches_pyproject():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub
