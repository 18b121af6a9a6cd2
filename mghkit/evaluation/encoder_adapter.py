"""Encoders as mteb sees them: a small text-encoder protocol, the encoding cache, the mteb adapter.

``TextEncoder`` is what a row of the comparison needs: ``encode(texts, instruction) -> [N, D]``
unit vectors and an ``identity`` string (the cache key's model part). ``CachedEncoder`` puts the
on-disk cache in front of one; ``MtebEncoder`` wraps it as an mteb ``AbsEncoder`` (cosine
similarity), choosing the instruction from the prompt type mteb asks for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mghkit.evaluation.cache import EmbeddingCache


class TextEncoder(Protocol):
    identity: str  # changes whenever the vectors could change (weights, adapter, pooling, length, ...)
    uses_instructions: bool

    def encode(self, texts: Sequence[str], instruction: str | None) -> np.ndarray: ...


@dataclass
class EncodeStats:
    """What one row cost: texts sent to the model, texts served from the cache, seconds encoding."""

    calls: int = 0
    encoded: int = 0
    cached: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rate = self.encoded / self.seconds if self.seconds > 0 else None
        return {
            "encode_calls": self.calls,
            "texts_encoded": self.encoded,
            "texts_from_cache": self.cached,
            "encode_seconds": round(self.seconds, 3),
            "texts_per_second": rate and round(rate, 2),
        }


Progress = Callable[[str, int, int], None]
"""``progress(description, done, total)``: called as texts are encoded (``done == total`` last)."""


@dataclass
class CachedEncoder:
    """A TextEncoder with the embedding cache in front (``cache=None``: no cache, still de-duplicated).

    Duplicate texts in one call are encoded once. With ``progress`` set, the texts to encode go
    to the model in length-sorted chunks of ``chunk`` texts and ``progress(label, done, total)``
    follows them (one call to the model otherwise).
    """

    inner: TextEncoder
    cache: EmbeddingCache | None = None
    stats: EncodeStats = field(default_factory=EncodeStats)
    label: str = ""
    progress: Progress | None = None
    chunk: int = 64

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def uses_instructions(self) -> bool:
        return self.inner.uses_instructions

    def encode(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        got = self.cache.get_many(self.identity, instruction, unique) if self.cache else [None] * len(unique)
        vecs: dict[str, np.ndarray] = {t: v for t, v in zip(unique, got, strict=True) if v is not None}
        todo = [t for t in unique if t not in vecs]
        self.stats.cached += len(texts) - len(todo)
        if todo:
            t0 = time.perf_counter()
            new = self._encode(todo, instruction)
            self.stats.seconds += time.perf_counter() - t0
            self.stats.calls += 1
            self.stats.encoded += len(todo)
            if self.cache:
                self.cache.put_many(self.identity, instruction, todo, new)
            vecs.update(zip(todo, new, strict=True))
        return np.stack([vecs[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def _encode(self, texts: list[str], instruction: str | None) -> np.ndarray:
        if self.progress is None:
            return np.asarray(self.inner.encode(texts, instruction), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # chunks of similar lengths
        parts: list[np.ndarray] = []
        self.progress(self.label, 0, len(texts))
        for start in range(0, len(order), self.chunk):
            part = [texts[i] for i in order[start : start + self.chunk]]
            parts.append(np.asarray(self.inner.encode(part, instruction), dtype=np.float32))
            self.progress(self.label, min(start + self.chunk, len(texts)), len(texts))
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out

    def close(self) -> None:
        """Undo what the row changed on a model object it was given (e.g. a max length)."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def model_meta(name: str, revision: str = "local", *, dim: int | None = None, max_tokens: int | None = None,
               sparse: bool = False) -> Any:  # fmt: skip
    """An mteb ModelMeta for a row (mteb silently replaces an encoder that has none); ``name`` is
    ``org/model`` (see :func:`mghkit.evaluation.models.meta_name`)."""
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    return ModelMeta(
        loader=None,
        name=name,
        revision=revision,
        release_date=None,
        languages=None,
        n_parameters=None,
        memory_usage_mb=None,
        max_tokens=max_tokens,
        embed_dim=dim,
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=[] if sparse else ["PyTorch"],
        similarity_fn_name=None if sparse else ScoringFunction.COSINE,
        use_instructions=False,
        training_datasets=None,
        model_type=["sparse"] if sparse else ["dense"],
    )


def make_mteb_encoder(
    encoder: CachedEncoder,
    meta: Any,
    instruction_for: Callable[[Any, Any], str | None],
) -> Any:
    """Wrap ``encoder`` as an mteb AbsEncoder with the ModelMeta ``meta``.

    ``instruction_for(task_metadata, prompt_type)`` picks the instruction (None for documents).
    """
    from mteb.models.abs_encoder import AbsEncoder

    class MtebEncoder(AbsEncoder):
        def __init__(self) -> None:
            self.model = encoder
            self.mteb_model_meta = meta

        def encode(
            self,
            inputs: Any,
            *,
            task_metadata: Any,
            hf_split: str,
            hf_subset: str,
            prompt_type: Any = None,
            **kwargs: Any,
        ) -> np.ndarray:
            texts = [t for batch in inputs for t in batch["text"]]
            return encoder.encode(texts, instruction_for(task_metadata, prompt_type))

    return MtebEncoder()
