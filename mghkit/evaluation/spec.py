"""The settings of one evaluation run and what they select: local data, mteb tasks, instructions.

With no task option (``beir``, ``sts``, ``tasks``, ``benchmark``) the bundled offline suite runs:
man-pages retrieval and SimLex-999 word similarity (``mghkit/data/eval``).

    >>> spec = EvalSpec(models=["minilm"], max_queries=5, max_docs=20, max_pairs=10)
    >>> spec.bundled
    True
    >>> beir, sts = read_local(spec)
    >>> [(b.name, len(b.queries)) for b in beir], [(s.name, len(s.pairs)) for s in sts]
    ([('manpages-retrieval', 5)], [('simlex999-sts', 10)])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mghkit.errors import UsageError
from mghkit.evaluation.data import BeirData, StsData, read_beir, read_sts, subset_beir, subset_sts
from mghkit.paths import bundled_eval_dir

DEFAULT_RETRIEVAL_INSTRUCTION = "Given a query, retrieve relevant documents that answer the query"
DEFAULT_STS_INSTRUCTION = "Retrieve semantically similar text."
BUNDLED_INSTRUCTIONS = {  # task-specific query instructions for the bundled suite (E5 style)
    "manpages-retrieval": "Given a one-line summary of a Linux function, file or concept, "
    "retrieve the manual page that describes it",
}
BASELINES = ("bm25",)
BEIR_SPLIT = "test"  # the qrels file read: qrels/test.tsv
MODEL_FILES_CHECKED = 10_000  # files of a model dir an output is compared with (a model dir has tens)


@dataclass
class EvalSpec:
    """Everything one run needs. With no task option (beir, sts, tasks, benchmark) the bundled suite runs."""

    models: list[Any] = field(default_factory=lambda: ["local"])  # names, Encoder or SentenceTransformer objects
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
    device: str | None = None  # torch device for models loaded by name, e.g. "cuda" (default: CPU)
    cache: bool = True
    cache_dir: str | None = None  # the mghkit cache root (default $MGHKIT_CACHE_DIR or ~/.cache/mghkit)

    @property
    def bundled(self) -> bool:
        return not (self.beir or self.sts or self.tasks or self.benchmark)

    def check(self) -> None:
        for name in ("max_queries", "max_docs", "batch_size", "max_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise UsageError(f"--max-pairs must be >= 2 (a correlation needs two pairs), got {self.max_pairs}")
        for b in self.baselines:
            if b not in BASELINES:
                raise UsageError(f"unknown baseline {b!r} (choose from {', '.join(BASELINES)})")
        from mghkit.model.config import POOLINGS, check_choice

        for p in self.poolings or []:
            check_choice("pooling", p, POOLINGS)
        if not self.models and not self.baselines:
            raise UsageError("nothing to evaluate: give --model or --baseline")
        from mghkit.model.config import DTYPES, check_device

        if self.dtype is not None:
            check_choice("dtype", self.dtype, DTYPES)
        if self.device is not None:
            check_device(self.device)
        from mghkit.evaluation.models import MINILM, is_encoder, is_sentence_transformer, is_sentence_transformers_dir
        from mghkit.model import loading

        for m in self.models:  # a mistyped model fails now, not after the first model's rows
            if isinstance(m, str) and not m.strip():
                raise UsageError(f"--model: expected a model name or dir, got {m!r}")
            if not isinstance(m, str):
                if not (is_encoder(m) or is_sentence_transformer(m)):
                    raise UsageError(
                        f"cannot evaluate a {type(m).__name__}: give a model name or dir, an mghkit Encoder "
                        "(mghkit.load_encoder) or a SentenceTransformer"
                    )
            elif (
                m not in (loading.LOCAL_NAME, MINILM)
                and not loading.is_run_dir(m)
                and not is_sentence_transformers_dir(m)
            ):
                loading.resolve_model_path(m)

    def input_files(self) -> list[Path]:
        """Every file the run reads as data (BEIR files, STS files) or as a model given by its
        dir: an output may be none of them (:func:`mghkit.files.check_distinct_outputs`)."""
        beir_dirs, sts_files = self.data_paths()
        files = [Path(f) for f in sts_files]
        for d in map(Path, beir_dirs):
            files += [d / "corpus.jsonl", d / "queries.jsonl", d / "qrels" / f"{BEIR_SPLIT}.tsv"]
        for m in self.models:
            if isinstance(m, str) and m.strip() and Path(m).is_dir():
                files += [f for f in itertools.islice(Path(m).rglob("*"), MODEL_FILES_CHECKED) if f.is_file()]
        return files

    def data_paths(self) -> tuple[list[str], list[str]]:
        """(BEIR dirs, STS files) the run reads: the given ones, or the bundled suite's."""
        if self.bundled:
            root = bundled_eval_dir()
            return [str(root / "manpages-retrieval")], [str(root / "simlex999-sts" / "test.jsonl")]
        return list(self.beir), list(self.sts)

    def to_dict(self, labels: list[str]) -> dict[str, Any]:
        """The settings as JSON-able values; ``labels`` stand for the models (objects are not copied)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["models"] = labels
        return out


def read_local(spec: EvalSpec) -> tuple[list[BeirData], list[StsData]]:
    """Read and check the local data (the bundled suite when no task option is given); no mteb needed."""
    beir_dirs, sts_files = spec.data_paths()
    beir = [
        subset_beir(
            read_beir(d, split=BEIR_SPLIT), max_queries=spec.max_queries, max_docs=spec.max_docs, seed=spec.seed
        )
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
