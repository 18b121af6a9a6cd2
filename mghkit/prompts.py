"""Prompt templates are data: files in the top-level ``prompts/`` folder, shipped inside the
wheel as ``mghkit/prompts``. A template's sha256 goes into every record it produced.

Templates use ``{name}`` placeholders (``str.format`` syntax; ``{{`` for a literal brace); a
missing variable is an error that names it.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mghkit.errors import UsageError


def prompts_dir() -> Path:
    """``mghkit/prompts`` in an installed wheel, else the repo's top-level ``prompts/``."""
    packaged = Path(str(resources.files("mghkit"))) / "prompts"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "prompts"


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    @property
    def variables(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.text) if f}

    def render(self, **values: object) -> str:
        missing = self.variables - values.keys()
        if missing:
            raise UsageError(f"prompt {self.name}: missing variable(s) {', '.join(sorted(missing))}")
        return self.text.format(**values)


def load_template(name: str) -> Template:
    """Load ``prompts/<name>`` (e.g. ``"generate.txt"``)."""
    path = prompts_dir() / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in prompts_dir().glob("*.txt")))
        raise UsageError(f"no prompt template {name!r}; known: {known}")
    return Template(name, path.read_text(encoding="utf-8"))
