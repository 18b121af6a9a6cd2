"""The rows of a comparison: each model (and pooling) as a TextEncoder with a cache identity.

A model is given by name or as a loaded object:

- a sentence-transformers dir (``modules.json``), ``minilm`` (the embedded all-MiniLM-L6-v2) or a
  ``SentenceTransformer`` object runs through sentence-transformers with its own pooling;
- anything else (``local``, a HF id or dir, a run dir, or an ``mghkit.Encoder`` object) is an
  mghkit encoder. The poolings of one decoder share its forward pass
  (``Encoder.encode_poolings``): a cache miss in any pooling's row encodes the texts once and
  stores every pooling's vectors, so the other rows read them back.

The cache identity of a model named by a path comes from its files; of an object, from its
weights (hashed once per run), so an encoder changed in memory is never served stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mghkit.evaluation.cache import EmbeddingCache
from mghkit.model.config import default_device
from mghkit.paths import embedded_minilm_path

log = logging.getLogger(__name__)

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


def weights_fingerprint(module: Any) -> str:
    """A short hash of a torch module's parameters and buffers (names, shapes, dtypes, bytes).

    About a second per GB of weights on a CPU; the identity of a model given as an object.
    """
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in module.state_dict().items():
            h.update(f"{name}\x1f{tuple(t.shape)}\x1f{t.dtype}\x1f".encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def is_sentence_transformers_dir(name: str) -> bool:
    return name == MINILM or (Path(name).is_dir() and (Path(name) / "modules.json").is_file())


def is_sentence_transformer(obj: Any) -> bool:
    """A ``SentenceTransformer`` object (checked by class, without importing sentence-transformers)."""
    return any(
        c.__name__ == "SentenceTransformer" and c.__module__.startswith("sentence_transformers")
        for c in type(obj).__mro__
    )


def is_encoder(obj: Any) -> bool:
    """An ``mghkit.Encoder`` object."""
    return any(c.__name__ == "Encoder" and c.__module__ == "mghkit.model.encoder" for c in type(obj).__mro__)


def model_label(model: Any) -> str:
    """The row label of a model: its name, an Encoder's ``name``, a SentenceTransformer's source."""
    if isinstance(model, str):
        return model
    if is_encoder(model):
        return str(model.name)
    if is_sentence_transformer(model):
        first = model[0] if len(model) else None
        source = getattr(getattr(getattr(first, "auto_model", None), "config", None), "_name_or_path", "")
        return str(source or "sentence-transformers")
    return type(model).__name__


@dataclass
class Row:
    """One line of the comparison table.

    ``name`` and ``revision`` are the row's mteb ModelMeta (the results layout written with
    ``output_folder``): ``mghkit/<model dir name or label>[-<pooling>]``, and a hash of the row's
    cache identity (weights or adapter, pooling, max length), which changes with any of them.
    """

    label: str
    model: str
    pooling: str
    kind: str  # "sentence-transformers" | "decoder" | "bm25"
    encoder: Any  # TextEncoder, or an mteb search model for bm25
    info: dict[str, Any]
    name: str = "mghkit/model"
    revision: str = "local"


def meta_name(model: Any, label: str, pooling: str | None = None) -> str:
    """The mteb model name of a row: ``mghkit/`` and the model dir's name (a run dir, a
    sentence-transformers dir) or the row label, with ``-<pooling>`` when poolings were chosen.

    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp()) / "exp-1"; run.mkdir()
    >>> meta_name(f"{run}/", f"{run}/"), meta_name("local", "local", "ata"), meta_name("no/such/dir", "no/such/dir")
    ('mghkit/exp-1', 'mghkit/local-ata', 'mghkit/no-such-dir')
    """
    base = Path(model).name if isinstance(model, str) and Path(model).exists() and Path(model).name else label
    if pooling:
        base = f"{base}-{pooling}"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in base).strip("-.") or "model"
    return f"mghkit/{safe}"


def revision(identity: str) -> str:
    """A short hash of a row's cache identity: its mteb revision."""
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


class SentenceTransformerEncoder:
    """A sentence-transformers model (its own pooling and normalisation) and its stored prompts.

    ``model``: a dir, ``minilm``, or a loaded ``SentenceTransformer`` (used as is: ``max_length``
    then applies to this run only and is restored by ``close``). The "instruction" of a call is
    the prompt text prepended to every text: :meth:`prompt_for` picks it from the model's
    ``prompts`` exactly as mteb's own SentenceTransformer wrapper does, so a row scores as
    ``mteb.evaluate`` of the same model.
    """

    uses_instructions = True

    def __init__(self, model: Any, *, max_length: int | None, batch_size: int, device: str = "cpu",
                 identity_from_weights: bool = True) -> None:  # fmt: skip
        if isinstance(model, str):
            from sentence_transformers import SentenceTransformer

            path = embedded_minilm_path() if model == MINILM else Path(model)
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
            source = f"st|{fingerprint(path)}"
        else:
            self.model = model
            source = f"st-obj|{weights_fingerprint(model) if identity_from_weights else id(model)}"
        self._saved_length = self.model.max_seq_length
        if max_length:
            self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
        self.batch_size = batch_size
        self.max_length = self.model.max_seq_length
        self.identity = f"{source}|len={self.max_length}"

    def prompt_for(self, task_metadata: Any, prompt_type: Any) -> str | None:
        """The prompt text for a task and side, as mteb's SentenceTransformerEncoderWrapper picks
        it: ``<task>-<side>``, ``<task>``, ``<type>-<side>``, ``<type>``, ``<side>`` keys of the
        model's ``prompts``; then what ``encode_query`` / ``encode_document`` / ``encode`` fall
        back to (``query``; ``document``, ``passage``, ``corpus``; the default prompt name)."""
        from mteb.models.abs_encoder import AbsEncoder, get_prompt_name

        prompts = {k: v for k, v in (self.model.prompts or {}).items() if v is not None}
        valid, _ = AbsEncoder.validate_task_to_prompt_name(prompts, raise_for_invalid_keys=False)
        if valid:
            name = get_prompt_name(valid, task_metadata, prompt_type)
            if name is not None and valid.get(name) is not None:
                return str(valid[name])
        side = str(getattr(prompt_type, "value", prompt_type)) if prompt_type is not None else None
        fallbacks = {"query": ["query"], "document": ["document", "passage", "corpus"]}.get(side or "", [])
        if side is None and self.model.default_prompt_name:
            fallbacks = [self.model.default_prompt_name]
        return next((prompts[k] for k in fallbacks if k in prompts), None)

    def encode(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                list(texts),
                prompt=instruction or "",  # "": no prompt (None would bring the default prompt back)
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )

    def close(self) -> None:
        self.model.max_seq_length = self._saved_length


class PooledDecoder:
    """One pooling's view of a shared decoder; encodes misses for every pooling of the group at once."""

    uses_instructions = True

    def __init__(self, group: DecoderGroup, pooling: str) -> None:
        self.group, self.pooling = group, pooling
        self.identity = group.identity(pooling)

    def encode(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        return self.group.encode(texts, instruction)[self.pooling]

    def close(self) -> None:
        pass


class DecoderGroup:
    """An mghkit Encoder and the poolings compared on it (one forward pass serves them all).

    ``source`` is the model part of the cache identity (files or weights fingerprint).
    """

    def __init__(
        self, encoder: Any, source: str, poolings: list[str], *, batch_size: int, cache: EmbeddingCache | None
    ) -> None:
        self.encoder, self.poolings = encoder, poolings
        self.batch_size, self.cache = batch_size, cache
        self._base = f"decoder|{source}"

    def identity(self, pooling: str) -> str:
        cfg = {k: v for k, v in self.encoder.config.to_dict().items() if k not in {"extra", "base_model"}}
        cfg["pooling"] = pooling
        if cfg.get("query_tokens") == "split":  # the layout from before the field: its cached vectors still hold
            del cfg["query_tokens"]
        return f"{self._base}|{json.dumps(cfg, sort_keys=True)}"

    def encode(self, texts: Sequence[str], instruction: str | None) -> dict[str, np.ndarray]:
        """Vectors of ``texts`` for every pooling; the other poolings' vectors go into the cache."""
        vecs = self.encoder.encode_poolings(texts, self.poolings, instruction=instruction, batch_size=self.batch_size)
        if self.cache is not None:
            for p, v in vecs.items():
                self.cache.put_many(self.identity(p), instruction, texts, v)
        return vecs


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


def load_rows(model: Any, label: str, spec: Any, cache: EmbeddingCache) -> list[Row]:
    """The rows of one model (a name or an object): one per pooling for an mghkit encoder, one for
    a sentence-transformers model. ``spec`` is the run's EvalSpec."""
    from mghkit.evaluation.encoder_adapter import CachedEncoder

    t0 = time.perf_counter()
    named = isinstance(model, str)
    if (named and is_sentence_transformers_dir(model)) or is_sentence_transformer(model):
        if spec.poolings:
            log.info("note: poolings do not apply to the sentence-transformers model %s; it uses its own", label)
        st = SentenceTransformerEncoder(model, max_length=spec.max_length, batch_size=spec.batch_size,
                                        device=spec.device or default_device(), identity_from_weights=spec.cache)  # fmt: skip
        info = {"dtype": "float32", "max_length": st.max_length, "load_seconds": round(time.perf_counter() - t0, 2),
                "prompts": {k: v for k, v in (st.model.prompts or {}).items() if v}}  # fmt: skip
        cached = CachedEncoder(st, cache, label=label)
        return [Row(label, label, "own", "sentence-transformers", cached, info, meta_name(model, label),
                    revision(st.identity))]  # fmt: skip
    if named:
        from mghkit.model.encoder import load_encoder

        causal = spec.causal if spec.causal else None
        enc = load_encoder(model, causal=causal, max_length=spec.max_length, dtype=spec.dtype,
                           device=spec.device or default_device())  # fmt: skip
        source = _model_fingerprint(model, enc)
    else:  # an Encoder object: used as is (no device move, no dtype change), settings per run only
        changes: dict[str, Any] = {"max_length": spec.max_length} if spec.max_length else {}
        if spec.causal:
            changes["bidirectional"] = False
        enc = model.with_config(**changes) if changes else model
        source = f"obj:{weights_fingerprint(enc.model) if spec.cache else id(enc)}"
    poolings = spec.poolings or [enc.config.pooling]
    group = DecoderGroup(enc, source, poolings, batch_size=spec.batch_size, cache=cache)
    info = {
        "dtype": enc.config.dtype,
        "max_length": enc.config.max_length,
        "bidirectional": enc.config.bidirectional,
        "base_model": enc.config.base_model,
        "load_seconds": round(time.perf_counter() - t0, 2),
    }
    rows = []
    for p in poolings:
        name = f"{label} [{p}]" if len(poolings) > 1 or spec.poolings else label
        pooled = PooledDecoder(group, p)
        rows.append(Row(name, label, p, "decoder", CachedEncoder(pooled, cache, label=name), dict(info),
                        meta_name(model, label, p if spec.poolings else None), revision(pooled.identity)))  # fmt: skip
    return rows
