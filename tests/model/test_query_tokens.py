"""How a query meets its instruction: "joint" (one string, as sentence-transformers) vs "split" (old runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mghkit.errors import UsageError
from mghkit.model.config import EncoderConfig
from mghkit.model.encoder import Encoder, load_encoder
from mghkit.model.tiny import _CORPUS, SPECIALS, tiny_model

TASK = "Given a question, retrieve passages that answer it"
QUERIES = ["sodium latin name", "how do I list files?", "the sun", "Potassium symbol K"]
WITH_SUFFIX = "Instruct: {task}\nQuery: {query}\nRelevant passage:"


def sentencepiece_style_tokenizer():
    """A Llama-style tokenizer (Metaspace ``▁``, prepended to the first word, merges across words),
    trained offline on the tiny corpus: the split form of a query starts with a lone ``▁``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")  # fmt: skip


@pytest.fixture(scope="module")
def encoders(tiny_llama):
    """{name: a joint-mode Encoder}: byte-level BPE (GPT-2 style) and SentencePiece style."""
    model, _ = tiny_model("llama")
    return {
        "byte-level": load_encoder(tiny_llama, pooling="mean"),
        "sentencepiece": Encoder(model, sentencepiece_style_tokenizer(), EncoderConfig(base_model="tiny-sp")),
    }


def _surface(tok, ids: list[int]) -> str:
    """The text a slice of token ids covers, from the pieces (a decoder may drop a slice's leading space)."""
    pieces = tok.convert_ids_to_tokens(ids)
    return (
        "".join(pieces).replace("▁", " ") if "▁" in "".join(tok.get_vocab()) else tok.convert_tokens_to_string(pieces)
    )


def _formatted(fmt: str, text: str) -> tuple[str, str, str]:
    before, _, after = fmt.partition("{query}")
    return before.replace("{task}", TASK), text, after.replace("{task}", TASK)


@pytest.mark.parametrize("kind", ["byte-level", "sentencepiece"])
@pytest.mark.parametrize("fmt", [EncoderConfig().query_format, WITH_SUFFIX])
def test_query_ids_are_the_joint_tokenization_and_only_the_text_is_pooled(encoders, kind, fmt):
    enc = encoders[kind].with_config(query_format=fmt)
    tok = enc.tokenizer
    assert enc.config.query_tokens == "joint"
    head = [tok.bos_token_id]
    differs = 0
    for text in QUERIES:
        before, _, after = _formatted(fmt, text)
        joint = tok(before + text + after, add_special_tokens=False)["input_ids"]
        ids, pooled = enc.features(text, TASK)
        assert ids == [*head, *joint, tok.eos_token_id]
        body = [i for i, p in zip(ids[1:-1], pooled[1:-1], strict=True) if p]
        assert _surface(tok, body).strip() == text  # the pooled tokens are exactly the text's
        n_pre = pooled[1:].index(1)
        assert pooled == [1] + [0] * n_pre + [1] * len(body) + [0] * (len(joint) - n_pre - len(body)) + [1]
        split = enc.with_config(query_tokens="split").features(text, TASK)[0]
        differs += split != ids
        pooled_all = enc.with_config(pool_instruction=True).features(text, TASK)[1]
        assert all(pooled_all)
    assert differs >= 2  # a query's first word is tokenized otherwise on its own (unless it is a lone piece)


@pytest.mark.slow
def test_the_real_model_query_keeps_its_leading_space_token():
    enc = load_encoder("local", max_length=64)
    tok = enc.tokenizer
    ids, pooled = enc.features("sodium latin name", TASK)
    joint = tok(f"Instruct: {TASK}\nQuery: sodium latin name", add_special_tokens=False)["input_ids"]
    assert ids == [*joint, tok.eos_token_id]
    text_tokens = [t for t, p in zip(tok.convert_ids_to_tokens(ids), pooled, strict=True) if p]
    assert text_tokens == ["Ġsodium", "Ġlat", "in", "Ġname", tok.eos_token]
    old = enc.with_config(query_tokens="split").features("sodium latin name", TASK)
    old_tokens = [t for t, p in zip(tok.convert_ids_to_tokens(old[0]), old[1], strict=True) if p]
    assert old_tokens[0] != "Ġsodium"
    doc = enc.features("sodium latin name")  # documents: unchanged, the text alone
    assert doc == enc.with_config(query_tokens="split").features("sodium latin name")


@pytest.mark.parametrize("kind", ["byte-level", "sentencepiece"])
def test_truncation_keeps_the_instruction_and_cuts_the_text_from_the_end(encoders, kind):
    enc = encoders[kind].with_config(query_format=WITH_SUFFIX)
    tok = enc.tokenizer
    text = "the earth orbits the sun once a year " * 20
    full_ids, full_pooled = enc.features(text, TASK)
    assert full_ids[1:-1] == tok("".join(_formatted(WITH_SUFFIX, text)), add_special_tokens=False)["input_ids"]
    n_pre, n_post = full_pooled[1:].index(1), full_pooled[-2::-1].index(1)  # instruction tokens each side
    assert n_pre > 0 and n_post > 0
    limit = 1 + n_pre + 10 + n_post + 1
    ids, pooled = enc.with_config(max_length=limit).features(text, TASK)
    assert len(ids) == limit
    assert ids[: 1 + n_pre + 10] == full_ids[: 1 + n_pre + 10]  # the prefix and the text's first tokens
    assert ids[-(n_post + 1) :] == full_ids[-(n_post + 1) :]  # the suffix and EOS
    assert sum(pooled) == 10 + 2 and ids[-1] == tok.eos_token_id
    with pytest.raises(UsageError, match="no room"):
        enc.with_config(max_length=limit - 10).features(text, TASK)


def test_a_config_saved_before_the_field_keeps_the_split_ids(encoders, tiny_llama, tmp_path):
    """An old mghkit_model.json (no ``query_tokens``) loads as "split": the old ids, the old vectors."""
    saved = EncoderConfig(base_model=tiny_llama, pooling="mean").to_dict()
    assert saved["query_tokens"] == "joint"  # what new runs write
    del saved["query_tokens"]
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "mghkit_model.json").write_text(json.dumps(saved))
    old = load_encoder(run)
    assert old.config.query_tokens == "split"
    tok = old.tokenizer
    for text in QUERIES:
        pre = tok(f"Instruct: {TASK}\nQuery: ", add_special_tokens=False)["input_ids"]
        body = tok(text, add_special_tokens=False)["input_ids"]
        ids, pooled = old.features(text, TASK)
        assert ids == [tok.bos_token_id, *pre, *body, tok.eos_token_id]  # each piece tokenized alone
        assert pooled == [1] + [0] * len(pre) + [1] * len(body) + [1]
    new = encoders["byte-level"]
    a, b = old.encode(QUERIES, instruction=TASK), new.encode(QUERIES, instruction=TASK)
    assert (a * b).sum(1).min() < 0.99  # the two layouts give other query vectors...
    np.testing.assert_allclose(old.encode(QUERIES), new.encode(QUERIES), atol=1e-6)  # ...and the same documents
    with pytest.raises(UsageError, match="unknown query tokens 'both'"):
        EncoderConfig(query_tokens="both")


def test_a_slow_tokenizer_keeps_the_split_layout(encoders):
    """Without character spans there is nothing to split the joint string by: split, as before."""
    enc = encoders["byte-level"]

    class Slow:  # the same tokenizer, reporting itself slow (no offsets)
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return False if name == "is_fast" else getattr(self.inner, name)

        def __call__(self, *args, **kwargs):
            assert "return_offsets_mapping" not in kwargs
            return self.inner(*args, **kwargs)

    slow = Encoder(enc.model, Slow(enc.tokenizer), enc.config)
    for text in QUERIES:
        assert slow.features(text, TASK) == enc.with_config(query_tokens="split").features(text, TASK)


def test_the_export_module_copy_of_the_span_walk_agrees():
    """mghkit_st.py ships alone in every export, with its own copy of ``text_token_range``."""
    import random

    from mghkit.exporting.mghkit_st import _text_token_range
    from mghkit.model.encoder import text_token_range

    rng = random.Random(0)
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, 40), rng.randint(1, 12)))
        spans = list(zip([0, *cuts], [*cuts, 40], strict=True))
        start = rng.randint(0, 40)
        end = rng.randint(start, 40)
        assert _text_token_range(spans, start, end) == text_token_range(spans, start, end)
