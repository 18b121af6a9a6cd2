"""Dense embedders for `mine --retriever dense|hybrid`, loaded offline.

``local`` is the embedded all-MiniLM-L6-v2 (as in ``validate --check-levels``); a directory with
``mghkit_model.json`` is an mghkit run dir (``mghkit.load_encoder``; queries get their
instruction); any other directory or an ``owner/name`` id already in the local cache is read by
sentence-transformers (an ``mghkit export`` dir too: its query prompt is used for the queries).
A model that cannot be loaded offline is a ``UsageError`` (exit 2) naming the spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mghkit.errors import UsageError
from mghkit.paths import embedded_minilm_path


@dataclass
class DenseEmbedder:
    """Texts -> L2-normalised float32 rows; queries may carry an instruction."""

    name: str
    fingerprint: str  # what the embedding cache keys on (the spec and its weights' files)
    encode_docs: Callable[[list[str]], np.ndarray]
    encode_queries: Callable[[list[str], str | None], np.ndarray]


def _fingerprint(spec: str, folder: Path | None) -> str:
    h = hashlib.sha256(spec.encode())
    if folder is not None:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
                st = p.stat()
                h.update(f"{p.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:24]


def load_dense_embedder(spec: str, *, batch_size: int = 64, max_length: int | None = None) -> DenseEmbedder:
    """The embedder named by ``spec`` (see the module docstring)."""
    path = embedded_minilm_path() if spec == "local" else Path(spec).expanduser()
    if path.is_dir() and (path / "mghkit_model.json").is_file():
        return _mghkit_run(spec, path, batch_size, max_length)
    if not path.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") != 1):
        raise UsageError(f"--embedder {spec!r}: not 'local', a model directory, or an owner/name model id")
    return _sentence_transformer(spec, path if path.exists() else None, batch_size, max_length)


def _sentence_transformer(spec: str, folder: Path | None, batch_size: int, max_length: int | None) -> DenseEmbedder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UsageError("--retriever dense needs sentence-transformers (pip install 'mghkit[eval]')") from None
    try:
        model = SentenceTransformer(str(folder or spec), device="cpu", local_files_only=True,
                                    trust_remote_code=folder is not None)  # fmt: skip
    except Exception as e:  # the library raises many types; any of them means "cannot load offline"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"--embedder {spec!r}: cannot be loaded offline: {first}") from None
    if max_length:
        model.max_seq_length = max_length
    prompt = "query" if "query" in (getattr(model, "prompts", None) or {}) else None

    def docs(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True), dtype=np.float32)  # fmt: skip

    def queries(texts: list[str], instruction: str | None) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, prompt_name=prompt), dtype=np.float32)  # fmt: skip

    return DenseEmbedder(spec, _fingerprint(spec, folder), docs, queries)


def _mghkit_run(spec: str, folder: Path, batch_size: int, max_length: int | None) -> DenseEmbedder:
    from mghkit.model.encoder import load_encoder

    enc = load_encoder(str(folder), max_length=max_length)

    def docs(texts: list[str]) -> np.ndarray:
        return np.asarray(enc.encode(texts, batch_size=batch_size), dtype=np.float32)

    def queries(texts: list[str], instruction: str | None) -> np.ndarray:
        return np.asarray(enc.encode(texts, instruction=instruction or None, batch_size=batch_size), dtype=np.float32)

    return DenseEmbedder(spec, _fingerprint(spec, folder), docs, queries)
