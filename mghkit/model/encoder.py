"""The encoder: text -> one vector, with a bidirectional decoder and a pooling mode.

    enc = load_encoder("local")                       # embedded SmolLM2-135M, bidirectional
    q = enc.encode(["sodium latin name"], instruction="Given a question, retrieve passages that answer it")
    d = enc.encode(["Sodium is natrium in Latin."])   # documents: no instruction; numpy [1, D]
    (q @ d.T)[0, 0]                                   # cosine (encode normalises by default)
    enc.encode(["sodium"], pooling="ata")             # another pooling, same weights

Token layout of one text: [tokenizer prefix specials, e.g. BOS] + [instruction prefix] + text +
[instruction suffix] + [tokenizer suffix specials] + [EOS if ``config.add_eos``]. The instruction
tokens are attended to but not pooled (``config.pool_instruction``); every other non-pad token,
BOS and EOS included, is pooled. Positions are counted from the first real token, so left and
right padding give the same vectors.

A query is tokenized as ONE string, ``query_format`` with ``{task}`` and ``{query}`` filled
(``config.query_tokens == "joint"``, a fast tokenizer): each token goes to the instruction prefix,
the text or the instruction suffix by its character span, a token that covers any of the text's
characters (``Ġsodium``, which starts on the prefix's trailing space) to the text. ``"split"``
(configs saved before the field, and slow tokenizers, which give no spans) tokenizes the three
pieces apart, as mghkit did first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mghkit.errors import UsageError
from mghkit.model import loading, packing
from mghkit.model.attention import LastLayerAttention
from mghkit.model.config import POOLINGS, EncoderConfig, check_choice
from mghkit.model.pooling import pool, pooling_weights

__all__ = ["Encoder", "EncoderConfig", "load_encoder"]

Features = tuple[list[int], list[int]]  # (token ids, pool flags)


class Encoder:
    """A model + tokenizer + EncoderConfig. ``encode`` for inference (numpy), ``embed`` for training
    (a differentiable tensor). ``name`` labels it in reports (default: the config's base model)."""

    def __init__(self, model: Any, tokenizer: Any, config: EncoderConfig, name: str | None = None) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.name = name or config.base_model
        self._specials = _special_layout(tokenizer)
        self._eos = [tokenizer.eos_token_id] if config.add_eos and tokenizer.eos_token_id is not None else []
        if self._eos and self._specials[1][-1:] == self._eos:
            self._eos = []
        self._instructions: dict[str, tuple[list[int], list[int]]] = {}
        self._formats: dict[str, tuple[str, str]] = {}
        self._joint = config.query_tokens == "joint" and bool(getattr(tokenizer, "is_fast", False))
        self._hook: LastLayerAttention | None = None
        if config.pooling == "ata":
            self._ensure_hook()

    # ------------------------------------------------------------------ tokenization
    def features(self, text: str, instruction: str | None = None) -> Features:
        """Token ids and pool flags (1 = pooled) for one text, truncated to ``config.max_length``."""
        head, tail = self._specials
        body: list[int] | None = None
        if instruction is None:
            pre, post = [], []
        elif self._joint:
            pre, body, post = self._joint_ids(text, instruction)
        else:
            pre, post = self._instruction_ids(instruction)
        budget = self.config.max_length - len(head) - len(pre) - len(post) - len(tail) - len(self._eos)
        if budget < 1:
            raise UsageError(f"the instruction leaves no room for text within max length {self.config.max_length}")
        if body is None:
            body = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        body = body[:budget]
        flag = 1 if self.config.pool_instruction else 0
        ids = head + pre + body + post + tail + self._eos
        pooled = (
            [1] * len(head)
            + [flag] * len(pre)
            + [1] * len(body)
            + [flag] * len(post)
            + [1] * (len(tail) + len(self._eos))
        )
        return ids, pooled

    def _query_format(self, instruction: str) -> tuple[str, str]:
        """The query format before and after ``{query}``, ``{task}`` filled (cached per instruction)."""
        if instruction not in self._formats:
            before, _, after = self.config.query_format.partition("{query}")
            self._formats[instruction] = (before.replace("{task}", instruction), after.replace("{task}", instruction))
        return self._formats[instruction]

    def _instruction_ids(self, instruction: str) -> tuple[list[int], list[int]]:
        """ "split": token ids of the query format before and after ``{query}``, each tokenized alone."""
        if instruction not in self._instructions:
            enc = [self.tokenizer(x, add_special_tokens=False)["input_ids"] if x else []
                   for x in self._query_format(instruction)]  # fmt: skip
            self._instructions[instruction] = (list(enc[0]), list(enc[1]))
        return self._instructions[instruction]

    def _joint_ids(self, text: str, instruction: str) -> tuple[list[int], list[int], list[int]]:
        """ "joint": (prefix, text, suffix) ids of the formatted query, tokenized as one string."""
        before, after = self._query_format(instruction)
        enc = self.tokenizer(before + text + after, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        a, b = text_token_range(enc["offset_mapping"], len(before), len(before) + len(text))
        return ids[:a], ids[a:b], ids[b:]

    def collate(self, feats: Sequence[Features]) -> dict[str, torch.Tensor]:
        """Pad to the longest (on ``config.padding_side``): input_ids, attention_mask, pool_mask, position_ids."""
        width = max(len(ids) for ids, _ in feats)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "pool_mask": [], "position_ids": []}
        for ids, pooled in feats:
            n, gap = len(ids), width - len(ids)
            parts = {"input_ids": (ids, pad), "attention_mask": ([1] * n, 0), "pool_mask": (pooled, 0),
                     "position_ids": (list(range(n)), 0)}  # fmt: skip
            for key, (values, fill) in parts.items():
                rows[key].append([fill] * gap + values if self.config.padding_side == "left" else values + [fill] * gap)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in rows.items()}

    def collate_packed(self, feats: Sequence[Features]) -> dict[str, torch.Tensor]:
        """A padding-free batch (mghkit/model/packing.py): the texts share rows as long as the longest,
        each attending only to itself; ``forward`` and ``embed`` take it like a padded batch. Under
        flash attention all the texts go in ONE row (transformers reads packed sequences from the
        position ids of a single row only)."""
        self.check_packing()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return packing.collate_packed(feats, pad, capacity=sum(len(ids) for ids, _ in feats) if self._flash else None)

    def check_packing(self) -> None:
        """Packed rows need a decoder (position ids and a 4D mask per layer); encoder-only models are refused."""
        if not self._is_decoder:
            raise UsageError(
                f"{self.name}: packing needs a decoder (Llama, Mistral, Qwen2...), not an encoder-only model"
            )

    def tokenize(self, texts: Sequence[str], instruction: str | None = None) -> dict[str, torch.Tensor]:
        """A padded batch for ``embed``: input_ids, attention_mask, pool_mask, position_ids [B, S]."""
        return self.collate([self.features(t, instruction) for t in _check_texts(texts)])

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor], attention: bool | None = None) -> dict[str, torch.Tensor]:
        """Run the model: {"hidden" [B,S,D], "pool_mask" [B,S], and "attn" [B,H,S,S], "valid" when asked}.

        ``attention`` defaults to whether the pooling needs it (ata). A packed batch
        (``collate_packed``) comes back as one text a row, right-padded to the longest text.
        """
        want = self.config.pooling == "ata" if attention is None else attention
        device = self.device
        inputs: dict[str, Any] = {
            k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids") if k in batch
        }
        if self._is_decoder:
            inputs["is_causal"] = not self.config.bidirectional
        hook = self._ensure_hook() if want and self._is_decoder else None
        segments = batch.get("segments")
        if segments is not None:  # packed: a block-diagonal mask in the attention implementation's form
            if hook is not None and self._flash:
                raise UsageError("packing with ATA pooling needs sdpa or eager attention, not flash attention "
                                 "(its one packed row would make the last layer's attention too large to keep)")  # fmt: skip
            inputs["attention_mask"], mask = self._packed_mask(batch["segment_ids"].to(device))
            if hook is not None:
                hook.mask = mask
        if hook is not None:
            hook.enabled = True
        try:
            out = self.model(**inputs, output_attentions=bool(want and not self._is_decoder), return_dict=True)
        finally:
            if hook is not None:
                hook.enabled, hook.mask = False, None
        result = {"hidden": out.last_hidden_state, "pool_mask": batch["pool_mask"].to(device).bool()}
        if want:
            if hook is not None:
                result["attn"], result["valid"] = hook.take()
            else:  # encoder-only models run eager and return their attentions
                keep = inputs["attention_mask"].bool()
                result["attn"] = out.attentions[-1].float()
                result["valid"] = keep[:, None, :, None] & keep[:, None, None, :]
        if segments is not None:  # back to one text a row, as a right-padded batch would be
            result = {k: (packing.unpack_pairs if k in ("attn", "valid") else packing.unpack)(v, segments)
                      for k, v in result.items()}  # fmt: skip
        return result

    def _packed_mask(self, segment_ids: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(what the model takes, the boolean mask) for packed rows: flash attention reads the text
        boundaries from position_ids (varlen) and takes no mask; eager adds a float mask."""
        mask = packing.block_mask(segment_ids, causal=not self.config.bidirectional)
        if self._flash:
            return None, mask
        if self._attn_implementation != "eager":
            return mask, mask
        dtype = next(self.model.parameters()).dtype
        dtype = dtype if dtype.is_floating_point else torch.float32  # a quantised base computes in float
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
        return additive, mask

    def weights(self, out: dict[str, torch.Tensor], pooling: str | None = None) -> torch.Tensor:
        """Pooling weights [B, S] for ``pooling`` (default: the config's) from a ``forward`` result."""
        cfg = self.config
        return pooling_weights(
            pooling or cfg.pooling, out["pool_mask"], out.get("attn"), out.get("valid"), cfg.ata_direction, cfg.ata_sign
        )

    def embed(self, batch: dict[str, torch.Tensor], normalize: bool = False) -> torch.Tensor:
        """Differentiable embeddings [B, D] of a ``tokenize`` batch (training calls this)."""
        out = self.forward(batch)
        vec = pool(out["hidden"], self.weights(out).to(out["hidden"].dtype)).float()
        return torch.nn.functional.normalize(vec, dim=-1) if normalize else vec

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        pooling: str | None = None,
        instruction: str | None = None,
        batch_size: int = 8,
        normalize: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embeddings [N, D] (numpy float32) in input order; unit length unless ``normalize=False``.

        ``pooling`` overrides the config's pooling for this call (the weights are shared);
        ``instruction`` makes the texts queries (E5 style; documents take none). Batches are
        sorted by length, longest first. ``progress(done, total)`` is called after each batch.
        """
        mode = pooling or self.config.pooling
        check_choice("pooling", mode, POOLINGS)
        return self.encode_poolings(
            texts, [mode], instruction=instruction, batch_size=batch_size, normalize=normalize, progress=progress
        )[mode]

    @torch.no_grad()
    def encode_poolings(
        self,
        texts: str | Sequence[str],
        poolings: Sequence[str],
        *,
        instruction: str | None = None,
        batch_size: int = 8,
        normalize: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Embeddings [N, D] per pooling from ONE forward pass per batch: the batching loop.

        The same vectors as ``encode(texts, pooling=p)`` for each ``p``, for the cost of one.
        """
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        for p in poolings:
            check_choice("pooling", p, POOLINGS)
        feats = [self.features(t, instruction) for t in _check_texts(texts)]
        order = sorted(range(len(feats)), key=lambda i: -len(feats[i][0]))
        out = {p: np.empty((len(feats), self.dim), dtype=np.float32) for p in poolings}
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                res = self.forward(self.collate([feats[i] for i in idx]), attention="ata" in poolings)
                hidden = res["hidden"]
                for p in poolings:
                    vec = pool(hidden, self.weights(res, p).to(hidden.dtype)).float()
                    vec = torch.nn.functional.normalize(vec, dim=-1) if normalize else vec
                    out[p][idx] = vec.cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
        finally:
            self.model.train(was_training)
        return out

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def _is_decoder(self) -> bool:
        return getattr(self.model.config, "model_type", "") in loading.DECODER_TYPES

    @property
    def _attn_implementation(self) -> str:
        return str(getattr(self.model.config, "_attn_implementation", None) or "sdpa")

    @property
    def _flash(self) -> bool:
        return self._attn_implementation.startswith("flash")

    def _ensure_hook(self) -> LastLayerAttention | None:
        if self._hook is None and self._is_decoder:
            self._hook = LastLayerAttention.for_model(self.model)
        return self._hook

    def with_config(self, **changes: Any) -> Encoder:
        """The same weights with other pooling settings (e.g. ``pooling="mean"``); shares the model."""
        if "bidirectional" in changes and self._is_decoder:
            self.model.config.is_causal = not changes["bidirectional"]
        return Encoder(self.model, self.tokenizer, replace(self.config, **changes), name=self.name)

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"Encoder(name={self.name!r}, pooling={cfg.pooling!r}, bidirectional={cfg.bidirectional}, dim={self.dim})"
        )


def load_encoder(
    name: str | Path = "local",
    *,
    pooling: str | None = None,
    causal: bool | None = None,
    ata_direction: str | None = None,
    ata_sign: str | None = None,
    max_length: int | None = None,
    dtype: str | None = None,
    padding_side: str | None = None,
    trust_remote_code: bool = False,
    device: str | None = None,
) -> Encoder:
    """Load an encoder from ``local``, a HF id or dir, a sentence-transformers dir, or a run dir.

    A run dir (``mghkit_model.json`` + ``adapter/``) brings its saved settings; the keyword
    arguments override them when given. ``causal=None`` keeps the saved/default direction
    (bidirectional). ``device`` (e.g. ``"cuda"``) moves the model there (default: CPU).

    >>> enc = load_encoder("runs/x", pooling="ata")  # doctest: +SKIP
    >>> enc.encode(["sodium latin name"]).shape  # doctest: +SKIP
    (1, 576)
    """
    name = str(name)
    overrides: dict[str, Any] = {
        "pooling": pooling,
        "ata_direction": ata_direction,
        "ata_sign": ata_sign,
        "max_length": max_length,
        "dtype": dtype,
        "padding_side": padding_side,
    }
    if causal is not None:
        overrides["bidirectional"] = not causal
    adapter: Path | None = None
    if loading.is_run_dir(name):
        base = EncoderConfig.from_dict(loading.read_run_config(name))  # run-relative paths resolved
        adapter = Path(name) / loading.ADAPTER_DIR
        adapter = adapter if adapter.is_dir() else None
    else:
        base = EncoderConfig(base_model=name)
    config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    model, tokenizer, _ = loading.load_model(
        config.base_model, bidirectional=config.bidirectional, dtype=config.dtype, trust_remote_code=trust_remote_code
    )
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).eval()
    if device:
        model.to(device)
    return Encoder(model, tokenizer, config, name=name)


def text_token_range(spans: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """(first, last + 1) index of the tokens whose character span overlaps ``[start, end)``: the
    text's tokens of a query tokenized with its instruction. Walks in from both ends, so the work
    is the instruction's length, not the text's.

    >>> text_token_range([(0, 6), (6, 7), (7, 14), (14, 18), (18, 19)], 7, 18)  # "Query: sodium name?"
    (2, 4)
    >>> text_token_range([(0, 5), (5, 12), (12, 17)], 6, 17)  # a token from the prefix's space on is text
    (1, 3)
    >>> text_token_range([(0, 6), (6, 7)], 7, 7)  # an empty text has no tokens
    (2, 2)
    """
    n = len(spans)
    first = 0
    while first < n and spans[first][1] <= start:
        first += 1
    last = n
    while last > first and spans[last - 1][0] >= end:
        last -= 1
    return (first, first) if end <= start else (first, last)


def _special_layout(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text (e.g. BOS; [CLS] ... [SEP])."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain) :])
    return [], []


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise UsageError(f"text {i}: expected a string, got {type(t).__name__}")
    return texts
