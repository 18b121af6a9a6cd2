"""Tiny random decoders (Llama / Mistral / Qwen2) with a real tokenizer, built offline in ~1 s.

For tests and examples: no hub download, no weights file needed. A byte-level BPE tokenizer is
trained with ``tokenizers`` on a few sentences (any text tokenizes, vocab ~300), and a 2-layer
model is built from a config with a fixed seed.

    from mghkit.model.tiny import save_tiny_model
    path = save_tiny_model(tmp_path / "tiny", family="mistral")   # a normal model dir
    enc = load_encoder(str(path), pooling="ata")
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

_CORPUS = [
    "What is the Latin name of sodium? Sodium is called natrium, hence the symbol Na.",
    "Potassium is kalium in Latin, so its symbol is K. Hydrogen comes from hydrogenium.",
    "The earth orbits the sun. The sun is orbited by the earth, once a year.",
    "Instruct: Given a question, retrieve passages that answer it\nQuery: how do I list files?",
    "ls lists directory contents; grep prints lines matching a pattern; man shows manual pages.",
    "Common uses of sodium include table salt, street lamps and soap (made with lye).",
]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


@functools.cache
def _tokenizer_json(vocab_size: int, add_bos: bool) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return str(tok.to_str())


def tiny_tokenizer(vocab_size: int = 320, add_bos: bool = True) -> Any:
    """A PreTrainedTokenizerFast with BOS <s>, EOS </s>, PAD <pad>; adds BOS when ``add_bos``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size, add_bos)),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def tiny_config(family: str = "llama", vocab_size: int = 320, hidden: int = 32, layers: int = 2) -> Any:
    """A decoder config: 4 heads, 2 KV heads (so repeat_kv matters), RoPE, given family."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    classes = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}
    if family not in classes:
        raise ValueError(f"unknown family {family!r} (choose from {', '.join(classes)})")
    return classes[family](
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
        architectures=[f"{classes[family].__name__.removesuffix('Config')}ForCausalLM"],
    )


def tiny_model(family: str = "llama", seed: int = 0, **config: Any) -> tuple[Any, Any]:
    """(causal LM model, tokenizer), random weights from ``seed``; eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer(add_bos=family != "qwen2")
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's random state is left as it was
        torch.default_generator.manual_seed(seed)  # the CPU generator only (the one CPU init draws from)
        model = AutoModelForCausalLM.from_config(tiny_config(family, vocab_size=len(tokenizer), **config))
    return model.eval(), tokenizer


def save_tiny_model(path: str | Path, family: str = "llama", seed: int = 0, **config: Any) -> Path:
    """Write a tiny random model + tokenizer as a normal model dir (safetensors); returns ``path``."""
    path = Path(path)
    model, tokenizer = tiny_model(family, seed, **config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
