"""``mghkit.export``: a trained run dir -> a model dir that other tools load without mghkit.

    >>> import mghkit
    >>> mghkit.export("runs/x", format="sentence-transformers", out="export/x")  # doctest: +SKIP
    >>> # SentenceTransformer("export/x", trust_remote_code=True).encode(["q"], prompt_name="query")

Both formats hold the weights (LoRA merged, or with ``merge=False`` the base plus ``adapter/``),
``config.json`` with ``is_causal: false`` (and no sliding window), the tokenizer (made to append
EOS, as mghkit does), ``mghkit_model.json`` (so ``mghkit.load_encoder(DIR)`` works) and README.md.
``sentence-transformers`` adds ``modules.json``, the module file ``mghkit_st.py`` (mghkit's token
layout and pooling) and the query prompt in ``config_sentence_transformers.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mghkit.errors import UsageError
from mghkit.exporting.card import model_card
from mghkit.jsonl import write_json_atomic, write_text_atomic
from mghkit.model import loading

__all__ = ["ExportResult", "export"]

FORMATS = ("sentence-transformers", "hf")
MODULE_FILE = "mghkit_st.py"
DEFAULT_INSTRUCTION = "Given a query, retrieve relevant documents that answer the query"


@dataclass
class ExportResult:
    out: Path
    format: str
    merged: bool
    pooling: str
    query_prompt: str
    files: list[str]


def check_export_args(run: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The run dir and output dir, checked before any model is loaded (UsageError: exit 2)."""
    run_p, out_p = Path(run), Path(out)
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not run_p.is_dir():
        raise UsageError(f"{run}: no such run dir")
    if not loading.is_run_dir(run_p):
        raise UsageError(f"{run}: not a mghkit run dir (no {loading.RUN_CONFIG})")
    if out_p.exists() and not out_p.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    if out_p.is_dir() and any(out_p.iterdir()):
        raise UsageError(f"{out}: exists and is not empty (give a new or empty directory)")
    if out_p.resolve() == run_p.resolve() or run_p.resolve() in out_p.resolve().parents:
        raise UsageError(f"{out}: inside the run dir {run}; export somewhere else")
    return run_p, out_p


def export(
    run: str | os.PathLike[str],
    *,
    format: str = "sentence-transformers",
    out: str | os.PathLike[str],
    merge: bool = True,
    instruction: str | None = None,
) -> ExportResult:
    """Write ``run`` (a ``mghkit train`` run dir) as a ``format`` model dir at ``out``.

    ``instruction`` is the task of the saved query prompt (``query_format`` with ``{task}`` filled,
    default: a generic retrieval instruction). ``out`` must be new or empty; it is written beside
    itself first and renamed into place, so a failed export leaves nothing behind.
    """
    run_p, out_p = check_export_args(run, format, out)
    from mghkit.model.encoder import load_encoder
    from mghkit.train.rundir import follow_umask

    encoder = load_encoder(str(run_p))
    config = encoder.config
    task = DEFAULT_INSTRUCTION if instruction is None else instruction
    before, _, after = config.query_format.partition("{query}")
    prompt, suffix = before.replace("{task}", task), after.replace("{task}", task)
    tmp = out_p.with_name(f".{out_p.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        merged = _save_weights(encoder.model, tmp, merge)
        _save_tokenizer(encoder.tokenizer, tmp, add_eos=config.add_eos)
        saved = replace(config, base_model=".", extra={**config.extra, "exported_from": run_p.name})
        write_json_atomic(tmp / loading.RUN_CONFIG, saved.to_dict())
        if format == "sentence-transformers":
            _save_st(tmp, config, encoder.dim, prompt, suffix)
        raw = json.loads((run_p / loading.RUN_CONFIG).read_text(encoding="utf-8"))
        write_text_atomic(tmp / "README.md", model_card(run_p, raw, fmt=format, merged=merged, instruction=prompt))
        follow_umask(tmp)
        if out_p.is_dir():
            out_p.rmdir()  # checked empty above
        tmp.rename(out_p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(str(p.relative_to(out_p)) for p in out_p.rglob("*") if p.is_file())
    return ExportResult(out_p, format, merged, config.pooling, prompt, files)


def _save_weights(model: Any, folder: Path, merge: bool) -> bool:
    """The weights at ``folder`` (config with its attention settings); True when LoRA was merged."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if merge:
            model = model.merge_and_unload()
        else:
            model.save_pretrained(str(folder / loading.ADAPTER_DIR))
            adapter_config = folder / loading.ADAPTER_DIR / "adapter_config.json"
            data = json.loads(adapter_config.read_text(encoding="utf-8"))
            write_json_atomic(adapter_config, {**data, "base_model_name_or_path": ".."})
            card = folder / loading.ADAPTER_DIR / "README.md"
            card.unlink(missing_ok=True)  # peft's card names the training machine's paths
            model = model.unload()
            merge = False
    else:
        merge = True  # a full fine-tune: the weights are the model
    model.config.use_cache = False
    model.save_pretrained(str(folder), safe_serialization=True)
    return merge


def _save_tokenizer(tokenizer: Any, folder: Path, *, add_eos: bool) -> None:
    """The tokenizer, made to append EOS (as mghkit does) when it does not already: then plain
    transformers, TEI and vLLM see mghkit's token layout for documents."""
    tokenizer.save_pretrained(str(folder))
    eos, file = tokenizer.eos_token, folder / "tokenizer.json"
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    if not add_eos or eos is None or not file.is_file() or full[-1:] == [tokenizer.eos_token_id]:
        return
    from tokenizers import Tokenizer, processors

    from mghkit.model.encoder import _special_layout

    head, tail = _special_layout(tokenizer)
    tokens = {i: tokenizer.convert_ids_to_tokens(i) for i in (*head, *tail, tokenizer.eos_token_id)}
    before, after = [tokens[i] for i in head], [*(tokens[i] for i in tail), eos]
    tok = Tokenizer.from_file(str(file))
    tok.post_processor = processors.TemplateProcessing(  # one template: a Sequence of two repeats the first
        single=" ".join([*before, "$A", *after]),
        pair=" ".join([*before, "$A", *after, "$B:1", *(f"{t}:1" for t in after)]),
        special_tokens=[(t, i) for i, t in tokens.items()],
    )
    tok.save(str(file))


def _save_st(folder: Path, config: Any, dim: int, prompt: str, suffix: str) -> None:
    """modules.json, the module configs, the shipped module file and the prompts."""
    from importlib.metadata import version

    shutil.copyfile(Path(__file__).with_name(MODULE_FILE), folder / MODULE_FILE)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "mghkit_st.MghkitTransformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "mghkit_st.MghkitPooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    write_json_atomic(folder / "modules.json", modules)
    write_json_atomic(folder / "sentence_bert_config.json", {
        "max_seq_length": config.max_length, "do_lower_case": False, "add_eos": config.add_eos,
        "pool_prompt": config.pool_instruction, "prompt_suffix": suffix,
        "capture_attention": config.pooling == "ata", "query_tokens": config.query_tokens,
    })  # fmt: skip
    pooling: dict[str, Any] = {"embedding_dimension": dim, "pooling": config.pooling,
                               "ata_direction": config.ata_direction, "ata_sign": config.ata_sign}  # fmt: skip
    st_modes = {"mean": "mean", "last": "lasttoken", "weighted-mean": "weightedmean"}
    if config.pooling in st_modes:  # the keys servers (TEI) read; mghkit_st.MghkitPooling ignores them
        pooling["pooling_mode"] = st_modes[config.pooling]
        for mode, key in (("mean", "mean_tokens"), ("last", "lasttoken"), ("weighted-mean", "weightedmean_tokens")):
            pooling[f"pooling_mode_{key}"] = config.pooling == mode
    (folder / "1_Pooling").mkdir()
    write_json_atomic(folder / "1_Pooling" / "config.json", pooling)
    (folder / "2_Normalize").mkdir()
    write_json_atomic(folder / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": version("sentence-transformers"), "mghkit": _mghkit_version()},
        "prompts": {"query": prompt, "document": ""}, "default_prompt_name": None, "similarity_fn_name": "cosine",
    })  # fmt: skip


def _mghkit_version() -> str:
    from mghkit import __version__

    return __version__
