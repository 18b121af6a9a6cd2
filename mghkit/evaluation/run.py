"""One evaluation run: tasks x rows (models, poolings, baselines), scored by mteb, as one report.

A notebook calls :func:`run_eval` with an :class:`EvalSpec`; the CLI only fills the spec in.

    spec = EvalSpec(models=["local", "minilm"], poolings=["mean", "ata"], baselines=["bm25"],
                    max_queries=50, max_docs=200, max_pairs=200, max_length=128)
    report = run_eval(spec)            # a JSON-able dict: settings, versions, tasks, rows
    render_table(report, Console(stderr=True))
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from mghkit.errors import UsageError
from mghkit.evaluation.data import BeirData, StsData, read_beir, read_sts, subset_beir, subset_sts
from mghkit.paths import bundled_eval_dir, cache_dir

DEFAULT_RETRIEVAL_INSTRUCTION = "Given a query, retrieve relevant documents that answer the query"
DEFAULT_STS_INSTRUCTION = "Retrieve semantically similar text."
BUNDLED_INSTRUCTIONS = {  # task-specific query instructions for the bundled suite (E5 style)
    "manpages-retrieval": "Given a one-line summary of a Linux function, file or concept, "
    "retrieve the manual page that describes it",
}
BASELINES = ("bm25",)


@dataclass
class EvalSpec:
    """Everything one run needs. With no task option (beir, sts, tasks, benchmark) the bundled suite runs."""

    models: list[str] = field(default_factory=lambda: ["local"])
    poolings: list[str] | None = None  # None: each model's own (a run dir's saved pooling, else the default)
    beir: list[str] = field(default_factory=list)
    sts: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    benchmark: str | None = None
    baselines: list[str] = field(default_factory=list)
    instruction: str | None = None  # query instruction for retrieval; None: per task default; "": none
    sts_instruction: str | None = DEFAULT_STS_INSTRUCTION  # applied to both sides of STS pairs; "": none
    max_length: int | None = None
    batch_size: int = 8
    seed: int = 0
    causal: bool = False
    dtype: str | None = None
    max_queries: int | None = None
    max_docs: int | None = None
    max_pairs: int | None = None
    device: str | None = None  # torch device for the models, e.g. "cuda" (default: CPU)
    threads: int | None = None  # torch CPU threads (None: torch's default); 1 helps on a busy machine
    cache: bool = True
    cache_dir: str | None = None  # the mghkit cache root (default $MGHKIT_CACHE_DIR or ~/.cache/mghkit)

    @property
    def bundled(self) -> bool:
        return not (self.beir or self.sts or self.tasks or self.benchmark)

    def check(self) -> None:
        for name in ("max_queries", "max_docs", "batch_size", "max_length", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise UsageError(f"--max-pairs must be >= 2 (a correlation needs two pairs), got {self.max_pairs}")
        for b in self.baselines:
            if b not in BASELINES:
                raise UsageError(f"unknown baseline {b!r} (choose from {', '.join(BASELINES)})")
        if self.poolings is not None:
            from mghkit.model.config import POOLINGS, check_choice

            for p in self.poolings:
                check_choice("pooling", p, POOLINGS)
        if not self.models and not self.baselines:
            raise UsageError("nothing to evaluate: give --model or --baseline")
        from mghkit.evaluation.models import MINILM, is_sentence_transformers_dir
        from mghkit.model import loading

        for m in self.models:  # a mistyped model fails now, not after the first model's rows
            if (
                m not in (loading.LOCAL_NAME, MINILM)
                and not loading.is_run_dir(m)
                and not is_sentence_transformers_dir(m)
            ):
                loading.resolve_model_path(m)


def read_local(spec: EvalSpec) -> tuple[list[BeirData], list[StsData]]:
    """Read and check the local data (the bundled suite when no task option is given); no mteb needed."""
    beir_dirs, sts_files = list(spec.beir), list(spec.sts)
    if spec.bundled:
        root = bundled_eval_dir()
        beir_dirs, sts_files = [str(root / "manpages-retrieval")], [str(root / "simlex999-sts" / "test.jsonl")]
    beir = [
        subset_beir(read_beir(d), max_queries=spec.max_queries, max_docs=spec.max_docs, seed=spec.seed)
        for d in beir_dirs
    ]
    sts = [subset_sts(read_sts(f), max_pairs=spec.max_pairs, seed=spec.seed) for f in sts_files]
    seen: dict[str, int] = {}
    everything: list[BeirData | StsData] = [*beir, *sts]
    for data in everything:  # two dirs with the same base name get distinct task names
        seen[data.name] = seen.get(data.name, 0) + 1
        if seen[data.name] > 1:
            data.name = f"{data.name}-{seen[data.name]}"
    return beir, sts


def build_tasks(spec: EvalSpec, beir: list[BeirData], sts: list[StsData]) -> list[Any]:
    """The run's tasks (mghkit EvalTask) with their instructions; MTEB tasks' data loaded (fails early)."""
    from mghkit.evaluation.tasks import beir_task, load_task_data, mteb_tasks, sts_task

    tasks = []
    for data in beir:
        default = BUNDLED_INSTRUCTIONS.get(data.name) if spec.bundled else None
        tasks.append(beir_task(data, instruction=_pick(spec.instruction, default), seed=spec.seed))
    for pairs in sts:
        t = sts_task(pairs, seed=spec.seed)
        t.instruction = spec.sts_instruction or None
        tasks.append(t)
    for t in mteb_tasks(spec.tasks, spec.benchmark):
        prompt = t.task.metadata.prompt
        own = prompt if isinstance(prompt, str) else (prompt or {}).get("query")
        if t.is_retrieval:
            t.instruction = _pick(spec.instruction, own)
        elif t.kind.upper() == "STS":
            t.instruction = spec.sts_instruction or None
        else:
            t.instruction = own
        tasks.append(t)
    for t in tasks:
        load_task_data(t)
    return tasks


def _pick(given: str | None, default: str | None) -> str | None:
    if given is not None:
        return given or None
    return default or DEFAULT_RETRIEVAL_INSTRUCTION


def quiet_libraries() -> None:
    """Progress bars and INFO logs of mteb/datasets/transformers off: stderr is for mghkit's own lines."""
    for name in ("mteb", "datasets", "sentence_transformers", "transformers", "huggingface_hub", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def load_rows(model: str, spec: EvalSpec, cache: Any, log: Callable[[str], None]) -> list[Any]:
    """The rows of one model: one per pooling for a decoder, one for a sentence-transformers model."""
    from mghkit.evaluation.encoder_adapter import CachedEncoder
    from mghkit.evaluation.models import (
        DecoderGroup,
        PooledDecoder,
        Row,
        SentenceTransformerEncoder,
        is_sentence_transformers_dir,
    )

    t0 = time.perf_counter()
    if is_sentence_transformers_dir(model):
        if spec.poolings:
            log(f"note: --pooling does not apply to the sentence-transformers model {model}; it uses its own")
        st = SentenceTransformerEncoder(
            model, max_length=spec.max_length, batch_size=spec.batch_size, device=spec.device or "cpu"
        )
        info = {"dtype": "float32", "max_length": st.max_length, "load_seconds": round(time.perf_counter() - t0, 2)}
        return [Row(model, model, "own", "sentence-transformers", CachedEncoder(st, cache), info)]
    from mghkit.model.encoder import load_encoder

    enc = load_encoder(model, causal=spec.causal if spec.causal else None, max_length=spec.max_length, dtype=spec.dtype)
    if spec.device:
        enc.model.to(spec.device)
    poolings = spec.poolings or [enc.config.pooling]
    group = DecoderGroup(enc, model, poolings, batch_size=spec.batch_size, cache=cache)
    info = {
        "dtype": enc.config.dtype,
        "max_length": enc.config.max_length,
        "bidirectional": enc.config.bidirectional,
        "base_model": enc.config.base_model,
        "load_seconds": round(time.perf_counter() - t0, 2),
    }
    rows = []
    for p in poolings:
        label = f"{model} [{p}]" if len(poolings) > 1 or spec.poolings else model
        rows.append(Row(label, model, p, "decoder", CachedEncoder(PooledDecoder(group, p), cache), dict(info)))
    return rows


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mghkit", "mteb", "transformers", "torch", "sentence-transformers", "peft", "numpy", "rank-bm25"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_eval(
    spec: EvalSpec,
    *,
    log: Callable[[str], None] = lambda s: None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every row on every task; returns the report (``on_row(report)`` after each row, for saving)."""
    spec.check()
    beir, sts = read_local(spec)  # bad local data fails here, before mteb or a model is loaded
    if spec.bundled:
        log("no task option given: running the bundled suite (man-pages retrieval, SimLex-999)")
    quiet_libraries()
    from mghkit.evaluation.cache import EmbeddingCache
    from mghkit.evaluation.tasks import import_mteb

    mteb = import_mteb()
    import torch

    torch.manual_seed(spec.seed)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    tasks = build_tasks(spec, beir, sts)
    for t in tasks:
        log(f"task {t.name}: {t.size or t.source} ({t.main_score})" + "".join(f"; {n}" for n in t.notes))
    cache_path = cache_dir(spec.cache_dir) / "eval" / "embeddings.sqlite3"
    cache = EmbeddingCache(cache_path if spec.cache else ":memory:")
    report: dict[str, Any] = {
        "versions": versions(),
        "settings": {**asdict(spec), "cache_file": str(cache_path) if spec.cache else None},
        "tasks": [
            {
                "name": t.name,
                "type": t.kind,
                "main_score": t.main_score,
                "source": t.source,
                "size": t.size,
                "instruction": t.instruction,
                "notes": list(t.notes),
            }
            for t in tasks
        ],
        "rows": [],
    }
    by_name = {t.name: t for t in tasks}
    encode_kwargs = {"batch_size": spec.batch_size, "show_progress_bar": False}
    try:
        for model in dict.fromkeys(spec.models):
            for row in load_rows(model, spec, cache, log):
                _evaluate_row(mteb, row, tasks, by_name, encode_kwargs, report, log)
                if on_row:
                    on_row(report)
        for b in dict.fromkeys(spec.baselines):
            from mghkit.evaluation.bm25 import BM25Search
            from mghkit.evaluation.models import Row

            row = Row(b, b, "-", "bm25", BM25Search(), {"dtype": None, "max_length": None})
            _evaluate_row(mteb, row, [t for t in tasks if t.is_retrieval], by_name, encode_kwargs, report, log)
            if on_row:
                on_row(report)
    finally:
        cache.close()
    return report


def _evaluate_row(
    mteb: Any,
    row: Any,
    tasks: list[Any],
    by_name: dict[str, Any],
    encode_kwargs: dict[str, Any],
    report: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    from mghkit.evaluation.encoder_adapter import make_mteb_encoder

    if row.kind == "bm25":
        model = row.encoder
    else:

        def instruction_for(task_metadata: Any, prompt_type: Any) -> str | None:
            if not row.encoder.uses_instructions or str(getattr(prompt_type, "value", prompt_type)) == "document":
                return None
            t = by_name.get(task_metadata.name)
            return t.instruction if t else None

        model = make_mteb_encoder(row.encoder, row.label, instruction_for)
    results: dict[str, Any] = {}
    for t in tasks:
        t0 = time.perf_counter()
        res = mteb.evaluate(
            model,
            t.task,
            cache=None,
            encode_kwargs=dict(encode_kwargs),
            show_progress_bar=False,
            overwrite_strategy="always",
            raise_error=True,
        )
        tr = res.task_results[0]
        main = float(tr.get_score())
        secs = time.perf_counter() - t0
        results[t.name] = {"main_score": main, "metric": t.main_score, "seconds": round(secs, 2), "scores": tr.scores}
        log(f"{row.label} on {t.name}: {t.main_score} {main:.4f} ({secs:.1f} s)")
    entry = {
        "label": row.label,
        "model": row.model,
        "pooling": row.pooling,
        "kind": row.kind,
        **row.info,
        "results": results,
    }
    if row.kind != "bm25":
        entry["identity"] = row.encoder.identity
        entry["encoding"] = row.encoder.stats.as_dict()
    report["rows"].append(entry)
