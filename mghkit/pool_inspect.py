"""pool-inspect: which tokens does a pooling weight, for any text.

The library part returns data (``inspect_texts`` -> per-token weights, ``to_document`` -> JSON)
and pure renderings (``render_rich`` -> rich renderables, ``render_html`` -> an HTML page as
text); the CLI prints and writes them.

    import mghkit
    from mghkit.pool_inspect import inspect_texts
    [doc] = inspect_texts(mghkit.load_encoder("local", pooling="ata"), ["sodium latin name"])
    doc.top(3)   # the three tokens with the largest ATA weight
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mghkit.errors import UsageError

log = logging.getLogger(__name__)

COMPARED = ("mean", "last", "weighted-mean")


@dataclass
class TokenWeight:
    position: int
    id: int
    token: str  # the tokenizer's piece, e.g. "Ġsodium"
    text: str  # the piece decoded, e.g. " sodium"
    pooled: bool  # False for instruction tokens
    weight: float  # the inspected pooling's weight (ATA by default)
    mean: float
    last: float
    weighted_mean: float


@dataclass
class InspectedText:
    text: str
    instruction: str | None
    tokens: list[TokenWeight]

    def top(self, n: int = 10) -> list[TokenWeight]:
        """The ``n`` pooled tokens with the largest weight, largest first (ties: earlier first)."""
        pooled = [t for t in self.tokens if t.pooled]
        return sorted(pooled, key=lambda t: (-t.weight, t.position))[:n]


def load_for_inspect(
    model: str,
    pooling: str = "ata",
    direction: str | None = None,
    sign: str | None = None,
    causal: bool = False,
    max_length: int = 512,
) -> Any:
    """``load_encoder`` with the inspected pooling, the options checked before torch is imported."""
    from mghkit.model import loading
    from mghkit.model.config import ATA_DIRECTIONS, ATA_SIGNS, POOLINGS, check_choice

    check_choice("pooling", pooling, POOLINGS)  # before torch is even imported
    check_choice("ata direction", direction or ATA_DIRECTIONS[0], ATA_DIRECTIONS)
    check_choice("ata sign", sign or ATA_SIGNS[0], ATA_SIGNS)
    if model != loading.LOCAL_NAME and not loading.is_run_dir(model):
        loading.resolve_model_path(model)  # a missing dir is reported before the slow imports
    from mghkit.model.encoder import load_encoder

    if model == loading.LOCAL_NAME and not loading.local_model_cached():
        log.info("converting the embedded model once (~40 s); later runs load it from the cache")
    return load_encoder(
        model, pooling=pooling, ata_direction=direction, ata_sign=sign, causal=causal or None, max_length=max_length
    )


def inspect_texts(encoder: Any, texts: Sequence[str], instruction: str | None = None) -> list[InspectedText]:
    """Per-token weights of ``encoder.config.pooling`` and of mean / last / weighted-mean, one text at a time."""
    import torch

    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise UsageError(f"text {i}: empty text (give at least one non-blank text)")
    result = []
    tok = encoder.tokenizer
    with torch.no_grad():
        for text in texts:
            batch = encoder.tokenize([text], instruction)
            out = encoder.forward(batch, attention=encoder.config.pooling == "ata")
            weights = {name: encoder.weights(out, name)[0].tolist() for name in (encoder.config.pooling, *COMPARED)}
            ids = batch["input_ids"][0].tolist()
            pooled = batch["pool_mask"][0].tolist()
            pieces = tok.convert_ids_to_tokens(ids)
            tokens = [
                TokenWeight(
                    position=p,
                    id=i,
                    token=str(pieces[p]),
                    text=tok.decode([i]),
                    pooled=bool(pooled[p]),
                    weight=weights[encoder.config.pooling][p],
                    mean=weights["mean"][p],
                    last=weights["last"][p],
                    weighted_mean=weights["weighted-mean"][p],
                )
                for p, i in enumerate(ids)
            ]
            result.append(InspectedText(text=text, instruction=instruction, tokens=tokens))
    return result


def to_document(docs: list[InspectedText], encoder: Any, model: str) -> dict[str, Any]:
    """One JSON-ready document: settings + every text's tokens and weights."""
    cfg = encoder.config
    return {
        "model": model,
        "pooling": cfg.pooling,
        "ata_direction": cfg.ata_direction,
        "ata_sign": cfg.ata_sign,
        "bidirectional": cfg.bidirectional,
        "texts": [
            {"text": d.text, "instruction": d.instruction, "tokens": [asdict(t) for t in d.tokens]} for d in docs
        ],
    }


def _heat(weight: float, peak: float) -> tuple[int, int, int]:
    """White -> red by ``weight / peak``.

    >>> _heat(0.0, 1.0), _heat(1.0, 1.0)
    ((255, 255, 255), (255, 60, 60))
    """
    x = 0.0 if peak <= 0 else max(0.0, min(1.0, weight / peak))
    return 255, round(255 - 195 * x), round(255 - 195 * x)


def render_rich(docs: list[InspectedText], pooling: str, top: int = 10) -> list[Any]:
    """Rich renderables: the coloured tokens, then a table of the top tokens per text."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    for n, doc in enumerate(docs, 1):
        peak = max((t.weight for t in doc.tokens), default=0.0)
        line = Text(f"[{n}] ", style="bold")
        for t in doc.tokens:
            style = "dim italic" if not t.pooled else "black on rgb({},{},{})".format(*_heat(t.weight, peak))
            line.append(t.text.replace("\n", "⏎"), style=style)
        out.append(line)
        table = Table(title=f"top tokens by {pooling} weight", title_justify="left")
        for col in ("pos", "token", pooling, "mean", "last", "weighted-mean"):
            table.add_column(col, justify="left" if col == "token" else "right")
        for t in doc.top(top):
            table.add_row(
                str(t.position),
                repr(t.text),
                f"{t.weight:.3f}",
                f"{t.mean:.3f}",
                f"{t.last:.3f}",
                f"{t.weighted_mean:.3f}",
            )
        out.append(table)
    return out


def render_html(docs: list[InspectedText], pooling: str, model: str, top: int = 10) -> str:
    """A self-contained HTML heatmap (tokens shaded by weight; hover for the numbers) + top-token tables."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>mghkit pool-inspect</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        ".t{white-space:pre-wrap;font-family:monospace;line-height:1.8}.i{color:#999;font-style:italic}"
        "table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>",
        f"<h1>pool-inspect</h1><p>model <code>{html.escape(model)}</code>, pooling <b>{html.escape(pooling)}</b></p>",
    ]
    for n, doc in enumerate(docs, 1):
        peak = max((t.weight for t in doc.tokens), default=0.0)
        spans = []
        for t in doc.tokens:
            tip = f"{t.token} | {pooling} {t.weight:.4f} | mean {t.mean:.4f} | last {t.last:.4f}"
            if t.pooled:
                style = "background:rgb({},{},{})".format(*_heat(t.weight, peak))
                spans.append(
                    f"<span style='{style}' title='{html.escape(tip, quote=True)}'>{html.escape(t.text)}</span>"
                )
            else:
                spans.append(f"<span class='i' title='instruction (not pooled)'>{html.escape(t.text)}</span>")
        parts.append(f"<h2>[{n}]</h2><div class='t'>{''.join(spans)}</div>")
        rows = "".join(
            f"<tr><td>{t.position}</td><td style='text-align:left'><code>{html.escape(repr(t.text))}</code></td>"
            f"<td>{t.weight:.3f}</td><td>{t.mean:.3f}</td><td>{t.last:.3f}</td><td>{t.weighted_mean:.3f}</td></tr>"
            for t in doc.top(top)
        )
        parts.append(
            f"<table><tr><th>pos</th><th>token</th><th>{html.escape(pooling)}</th><th>mean</th><th>last</th>"
            f"<th>weighted-mean</th></tr>{rows}</table>"
        )
    return "\n".join(parts) + "\n"
