"""mghkit's encoder as sentence-transformers modules; shipped as ``mghkit_st.py`` in every export.

Loaded by ``SentenceTransformer(DIR, trust_remote_code=True)`` with no mghkit installed: this
file imports torch and sentence-transformers only (the pooling functions are copies of
``mghkit/model/pooling.py`` and ``mghkit/model/attention.py``; tests/test_export.py checks that
the vectors equal mghkit's; ``_text_token_range`` is ``mghkit.model.encoder.text_token_range``).

- ``MghkitTransformer``: the bidirectional decoder with mghkit's token layout - tokenizer
  specials (e.g. BOS) + prompt + text + prompt suffix + EOS, the prompt attended to but not
  pooled, position ids counted from the first real token. ``query_tokens="joint"`` tokenizes
  prompt + text + suffix as one string and gives each token to the prompt, the text or the suffix
  by its character span (a token covering any text character is the text's); ``"split"`` (exports
  made before the key existed) tokenizes the three apart, as those mghkit runs did.
  With ``capture_attention`` it also records the last layer's attention probabilities (for ATA)
  by recomputing softmax(q k^T * scaling + mask) in a pre-hook, so the model stays on sdpa.
  An ``adapter/`` folder beside the weights (an export made with ``--no-merge``) is applied
  with peft.
- ``MghkitPooling``: mean, last, weighted-mean (ranks over the pooled tokens) or ATA weights
  over the pooled tokens, then one weighted sum. Its config also carries sentence-transformers'
  own ``pooling_mode`` keys, which servers such as TEI read (mean and last only).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

try:  # sentence-transformers >= 6 passes the prompt to preprocess(), so its tokens are known apart
    from sentence_transformers.base.modules import Module, Transformer
except ImportError as e:  # pragma: no cover - sentence-transformers 5 joins prompt and text: wrong query vectors
    raise ImportError(f"this mghkit export needs sentence-transformers >= 6.2 ({e})") from e

EPS = 1e-6
POOLINGS = ("ata", "mean", "last", "weighted-mean")
ST_MODES = {"mean": "mean", "last": "lasttoken", "weighted-mean": "weightedmean"}


class MghkitTransformer(Transformer):  # type: ignore[misc]
    config_keys: list[str] = [  # noqa: RUF012 - as in Transformer
        *Transformer.config_keys,
        "add_eos",
        "pool_prompt",
        "prompt_suffix",
        "capture_attention",
        "query_tokens",
    ]

    def __init__(
        self,
        model_name_or_path: str,
        *args: Any,
        add_eos: bool = True,
        pool_prompt: bool = False,
        prompt_suffix: str = "",
        capture_attention: bool = False,
        query_tokens: str = "split",  # an export written before the key: its queries as it made them
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name_or_path, *args, **kwargs)
        if query_tokens not in ("joint", "split"):
            raise ValueError(f"unknown query_tokens {query_tokens!r} (choose from joint, split)")
        self.add_eos, self.pool_prompt = add_eos, pool_prompt
        self.prompt_suffix, self.capture_attention = prompt_suffix, capture_attention
        self.query_tokens = query_tokens
        adapter = os.path.join(str(model_name_or_path), "adapter")
        if os.path.isfile(os.path.join(adapter, "adapter_config.json")):
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter, is_trainable=False)  # type: ignore[assignment]
        tok: Any = self.tokenizer
        self._head, self._tail = _special_layout(tok)
        eos = [tok.eos_token_id] if add_eos and tok.eos_token_id is not None else []
        self._eos = [] if eos and self._tail[-1:] == eos else eos
        self._prompts: dict[str, tuple[list[int], list[int]]] = {}
        self._joint = query_tokens == "joint" and bool(getattr(tok, "is_fast", False))
        self._hook: _LastLayerAttention | None = None

    # ------------------------------------------------------------------ tokenization (mghkit's layout)
    def _features(self, text: str, prompt: str | None) -> tuple[list[int], list[int]]:
        tok: Any = self.tokenizer
        pre: list[int] = []
        post: list[int] = []
        body: list[int] | None = None
        if prompt and self._joint:
            enc = tok(prompt + text + self.prompt_suffix, add_special_tokens=False, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            a, b = _text_token_range(enc["offset_mapping"], len(prompt), len(prompt) + len(text))
            pre, body, post = ids[:a], ids[a:b], ids[b:]
        elif prompt:
            if prompt not in self._prompts:
                self._prompts[prompt] = tuple(  # type: ignore[assignment]
                    list(tok(x, add_special_tokens=False)["input_ids"]) if x else []
                    for x in (prompt, self.prompt_suffix)
                )
            pre, post = self._prompts[prompt]
        limit = self.max_seq_length or 512
        budget = limit - len(self._head) - len(pre) - len(post) - len(self._tail) - len(self._eos)
        if body is None:
            body = tok(text, add_special_tokens=False)["input_ids"]
        body = body[: max(budget, 1)]
        flag = 1 if self.pool_prompt else 0
        ids = self._head + pre + body + post + self._tail + self._eos
        pooled = [1] * len(self._head) + [flag] * len(pre) + [1] * len(body) + [flag] * len(post)
        return ids, pooled + [1] * (len(self._tail) + len(self._eos))

    def preprocess(  # type: ignore[override]
        self, inputs: Any, prompt: str | None = None, processing_kwargs: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        texts = [x if isinstance(x, str) else x[0] if isinstance(x, tuple) else x["text"] for x in inputs]
        feats = [self._features(t, prompt) for t in texts]
        width = max(len(ids) for ids, _ in feats) if feats else 0
        tok: Any = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "pool_mask": [], "position_ids": []}
        for ids, pooled in feats:
            gap = width - len(ids)
            rows["input_ids"].append(ids + [pad] * gap)
            rows["attention_mask"].append([1] * len(ids) + [0] * gap)
            rows["pool_mask"].append(pooled + [0] * gap)
            rows["position_ids"].append(list(range(len(ids))) + [0] * gap)
        out: dict[str, Any] = {k: torch.tensor(v, dtype=torch.long) for k, v in rows.items()}
        out["modality"] = "text"
        return out

    def tokenize(self, texts: Any, **kwargs: Any) -> dict[str, Any]:
        return self.preprocess(texts, **kwargs)

    # ------------------------------------------------------------------ forward
    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        hook = None
        if self.capture_attention:
            if self._hook is None:
                self._hook = _LastLayerAttention(self.model)
            hook = self._hook
            hook.enabled = True
        try:
            out = self.model(
                input_ids=features["input_ids"],
                attention_mask=features["attention_mask"],
                position_ids=features["position_ids"],
                is_causal=False,
                return_dict=True,
            )
        finally:
            if hook is not None:
                hook.enabled = False
        features["token_embeddings"] = out.last_hidden_state
        if hook is not None:
            features["attention"], features["attention_valid"] = hook.attn, hook.valid
            hook.attn = hook.valid = None
        return features


class MghkitPooling(Module):  # type: ignore[misc]
    config_keys: list[str] = ["embedding_dimension", "pooling", "ata_direction", "ata_sign"]  # noqa: RUF012 - as in Module

    def __init__(
        self,
        embedding_dimension: int,
        pooling: str = "mean",
        ata_direction: str = "received",
        ata_sign: str = "positive",
        **ignored: Any,  # sentence-transformers' pooling_mode keys, written for servers
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r} (choose from {', '.join(POOLINGS)})")
        self.embedding_dimension, self.pooling = embedding_dimension, pooling
        self.ata_direction, self.ata_sign = ata_direction, ata_sign

    def get_config_dict(self) -> dict[str, Any]:
        config = {key: getattr(self, key) for key in self.config_keys}
        if self.pooling in ST_MODES:
            config["pooling_mode"] = ST_MODES[self.pooling]
            config["pooling_mode_mean_tokens"] = self.pooling == "mean"
            config["pooling_mode_lasttoken"] = self.pooling == "last"
            config["pooling_mode_weightedmean_tokens"] = self.pooling == "weighted-mean"
        return config

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        hidden = features["token_embeddings"]
        mask = features["pool_mask"].to(hidden.device).bool()
        if self.pooling == "mean":
            w = _normalise(mask.float(), mask)
        elif self.pooling == "last":
            pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            last = torch.where(mask, pos, -1).max(-1, keepdim=True).values
            w = (pos == last).float() * mask.float()
        elif self.pooling == "weighted-mean":
            w = _normalise(torch.cumsum(mask.long(), -1).float() * mask.float(), mask)
        else:
            if features.get("attention") is None:
                raise ValueError(
                    "ATA pooling needs the last layer's attention: MghkitTransformer(capture_attention=True)"
                )
            w = _ata_weights(
                features["attention"], mask, features["attention_valid"], self.ata_direction, self.ata_sign
            )
        features["sentence_embedding"] = torch.einsum("bs,bsd->bd", w.to(hidden.dtype), hidden)
        return features

    def get_embedding_dimension(self) -> int:
        return int(self.embedding_dimension)

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.embedding_dimension)

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        self.save_config(output_path)


# ---------------------------------------------------------------------- copies of mghkit's pure functions
def _normalise(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = w.masked_fill(~mask, 0.0)
    total = w.sum(-1, keepdim=True)
    uniform = mask.to(w.dtype) / mask.sum(-1, keepdim=True).clamp(min=1).to(w.dtype)
    return torch.where(total > 0, w / total.clamp(min=torch.finfo(w.dtype).tiny), uniform)


def _ata_weights(
    attn: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, direction: str, sign: str
) -> torch.Tensor:
    k = mask.sum(-1).to(torch.float32).view(-1, 1, 1, 1)
    x = attn.to(torch.float32).clamp(min=EPS) * (k + 1)
    logs = (x.clamp(min=1.0) if sign == "positive" else x).log() * valid
    other = mask.to(torch.float32)
    w = torch.einsum("bhij,bj->bi", logs, other) if direction == "given" else torch.einsum("bhij,bi->bj", logs, other)
    w = w.masked_fill(~mask, 0.0)
    if sign == "literal":
        total = w.sum(-1, keepdim=True)
        safe = torch.where(total == 0, torch.ones_like(total), total)
        w = torch.where(total == 0, torch.zeros_like(w), w / safe).clamp(min=0.0)
    return _normalise(w, mask)


def _text_token_range(spans: Any, start: int, end: int) -> tuple[int, int]:
    """(first, last + 1) index of the tokens whose character span overlaps [start, end)."""
    n = len(spans)
    first = 0
    while first < n and spans[first][1] <= start:
        first += 1
    last = n
    while last > first and spans[last - 1][0] >= end:
        last -= 1
    return (first, first) if end <= start else (first, last)


def _special_layout(tokenizer: Any) -> tuple[list[int], list[int]]:
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain) :])
    return [], []


class _LastLayerAttention:
    """A pre-hook on the last self-attention module: softmax(q k^T * scaling + mask) [B,H,S,S], fp32."""

    def __init__(self, model: torch.nn.Module) -> None:
        found = [m for n, m in model.named_modules() if n.endswith("self_attn") and hasattr(m, "q_proj")]
        if not found:
            raise ValueError(f"{type(model).__name__}: no self_attn module with q_proj/k_proj found")
        self.module = found[-1]
        modeling = sys.modules[type(self.module).__module__]
        self._rope, self._repeat_kv = modeling.apply_rotary_pos_emb, modeling.repeat_kv
        self.enabled = False
        self.attn: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None
        self.module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self.enabled:
            return
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        cos, sin = kwargs["position_embeddings"] if "position_embeddings" in kwargs else args[1]
        mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
        b, s, _ = hidden.shape
        shape = (b, s, -1, module.head_dim)
        q, k = module.q_proj(hidden).view(shape), module.k_proj(hidden).view(shape)
        if hasattr(module, "q_norm"):
            q, k = module.q_norm(q), module.k_norm(k)
        q, k = self._rope(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        k = self._repeat_kv(k, module.num_key_value_groups)
        scores = torch.matmul(q.float() * module.scaling, k.float().transpose(2, 3))
        if mask is None:  # no padding, bidirectional
            valid = torch.ones(b, 1, s, s, dtype=torch.bool, device=hidden.device)
        elif mask.dtype == torch.bool:
            valid = mask[:, :, -s:, -s:]
        else:
            valid = mask[:, :, -s:, -s:] > torch.finfo(mask.dtype).min / 2
        scores.masked_fill_(~valid, float("-inf"))
        self.attn, self.valid = torch.softmax(scores, dim=-1).nan_to_num_(nan=0.0), valid
