"""What `mine` reads: (query, positive) pairs and a corpus, from records, JSONL or a BEIR dir.

Pairs stream (a JSONL file is read twice: once for the ids and the positives of each query, which
the false-negative filter needs, then again while mining), the corpus is held in memory (it is
indexed). Every problem is one ``InputError`` naming ``file:line: field``.

    >>> corpus = Corpus.build([(None, "a b"), ("d2", "c d")])
    >>> corpus.find("c d"), corpus.find("x"), len(corpus)
    ([1], [], 2)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import InputError, UsageError
from mghkit.jsonl import display_name, iter_lines
from mghkit.validate.dedup import key_hash

Source = str | os.PathLike[str]


@dataclass
class Pair:
    """One (query, positive) pair to mine negatives for, and where it came from."""

    id: str
    query: str
    positive: str
    instruction: str | None = None
    kind: str | None = None
    positive_doc: str | None = None  # BEIR: the positive's doc id
    source: str = "<pairs>"
    line: int = 0


@dataclass
class Corpus:
    """Documents (id or None, text) with a text -> positions index (by 63-bit hash)."""

    ids: list[str | None]
    texts: list[str]
    by_hash: dict[int, list[int]] = field(default_factory=dict)
    by_id: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, docs: Iterable[tuple[str | None, str]]) -> Corpus:
        c = cls([], [])
        for doc_id, text in docs:
            i = len(c.texts)
            c.ids.append(doc_id)
            c.texts.append(text)
            c.by_hash.setdefault(key_hash(text), []).append(i)
            if doc_id is not None:
                c.by_id.setdefault(doc_id, i)
        return c

    def __len__(self) -> int:
        return len(self.texts)

    def find(self, text: str) -> list[int]:
        """Positions of the documents whose text is exactly ``text``."""
        return [i for i in self.by_hash.get(key_hash(text), []) if self.texts[i] == text]

    def digest(self) -> str:
        """sha256 of the texts in order (the embedding cache's key)."""
        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
        return h.hexdigest()


# ----------------------------------------------------------------------------- records
def records(source: Iterable[Any] | Source, what: str) -> Iterator[tuple[str, int, Any]]:
    """(source name, 1-based line or position, record) of a JSONL path or an in-memory iterable."""
    if isinstance(source, str | os.PathLike):
        name = display_name(os.fspath(source))
        if os.fspath(source) != "-" and not Path(source).exists():
            raise UsageError(f"{name}: no such file")
        for line in iter_lines(os.fspath(source)):
            if line.obj is None:
                raise InputError(line.error or "bad line", path=name, line=line.lineno)
            yield name, line.lineno, line.obj
        return
    if isinstance(source, dict):
        raise UsageError(f"{what}: expected a list of records or a path, got one dict")
    for i, rec in enumerate(source, 1):
        yield f"<{what}>", i, rec


def _field(rec: Any, name: str) -> Any:
    return rec.get(name) if isinstance(rec, dict) else getattr(rec, name, None)


def parse_pair(source: str, line: int, rec: Any, default_id: Callable[[str, str], str]) -> Pair:
    values: dict[str, Any] = {}
    for name in ("query", "positive"):
        value = _field(rec, name)
        if not isinstance(value, str) or not value.strip():
            raise InputError("expected a non-empty string", path=source, line=line, field=name)
        values[name] = value
    for name in ("instruction", "id", "kind"):
        value = _field(rec, name)
        if value is not None and not isinstance(value, str):
            raise InputError("expected a string", path=source, line=line, field=name)
        values[name] = value
    pid = values.pop("id") or default_id(values["query"], values["positive"])
    return Pair(id=pid, source=source, line=line, **values)


def is_beir_dir(source: Any) -> bool:
    return isinstance(source, str | os.PathLike) and Path(source).is_dir()


def beir_split(directory: Source) -> str:
    """The qrels split to take pairs from: train when there is one, else test, else the only one."""
    names = sorted(p.stem for p in (Path(directory) / "qrels").glob("*.tsv"))
    for split in ("train", "test"):
        if split in names:
            return split
    if len(names) == 1:
        return names[0]
    raise UsageError(f"{directory}: expected qrels/train.tsv or qrels/test.tsv")


def read_corpus(corpus: Iterable[Any] | Source) -> Iterator[tuple[str | None, str]]:
    """(doc id or None, text) of each document; a record's text is ``title text``; a BEIR dir
    gives its ``corpus.jsonl``."""
    if is_beir_dir(corpus):
        corpus = Path(corpus) / "corpus.jsonl"  # type: ignore[arg-type]
    for source, line, rec in records(corpus, "corpus"):
        if isinstance(rec, str):
            yield None, rec
            continue
        text, title = _field(rec, "text"), _field(rec, "title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise InputError("expected a string", path=source, line=line, field="text")
        doc_id = _field(rec, "_id") or _field(rec, "id")
        yield None if doc_id is None else str(doc_id), f"{title} {text}".strip()
