"""Local data as mteb tasks, and MTEB tasks by name, so every figure is mteb's own.

A local BEIR dir becomes an ``AbsTaskRetrieval`` (main score nDCG@10), an STS file an
``AbsTaskSTS`` (main score cosine Spearman); both override ``load_data`` with the records read by
:mod:`mghkit.evaluation.data`, as mteb's own mock tasks do.

``import mteb`` creates its result cache dir (``$MTEB_CACHE``, default ``~/.cache/mteb``); runs
here never write results there (``cache=None``). The CLI points it under mghkit's cache dir.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from mghkit.errors import RuntimeFailure, UsageError
from mghkit.evaluation.data import BeirData, StsData


@dataclass
class EvalTask:
    """One task of a run: the mteb task object plus what the report needs to know about it."""

    name: str
    kind: str  # "retrieval" | "sts" | an mteb task type
    task: Any  # mteb AbsTask
    instruction: str | None = None  # the query instruction for retrieval tasks (None: none)
    source: str = ""
    size: str = ""
    notes: tuple[str, ...] = ()

    @property
    def main_score(self) -> str:
        return str(self.task.metadata.main_score)

    @property
    def is_retrieval(self) -> bool:
        return self.kind.lower() == "retrieval"


def _metadata_args(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "reference": None,
        "dataset": {"path": f"local/{name}", "revision": "local"},
        "category": "t2t",
        "modalities": ["text"],
        "eval_splits": ["test"],
        "eval_langs": ["eng-Latn"],
        "date": None,
        "dialect": [],
        "domains": [],
        "task_subtypes": [],
        "license": None,
        "annotations_creators": None,
        "sample_creation": "found",
        "bibtex_citation": "",
    }


def _task_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "local"


def beir_task(data: BeirData, *, instruction: str | None, seed: int = 42) -> EvalTask:
    """A local BEIR set as an mteb retrieval task."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    name = _task_name(data.name)
    meta = TaskMetadata(
        type="Retrieval",
        main_score="ndcg_at_10",
        **_metadata_args(name, f"Local BEIR retrieval data from {data.source}"),
    )

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q, "text": t} for q, t in data.queries.items()]),
            corpus=Dataset.from_list([{"id": d, "title": ti, "text": te} for d, (ti, te) in data.corpus.items()]),
            relevant_docs={q: dict(docs) for q, docs in data.qrels.items()},
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True

    cls = type("LocalRetrievalTask", (AbsTaskRetrieval,), {"metadata": meta, "load_data": load_data})
    return EvalTask(
        name,
        "retrieval",
        cls(seed=seed),
        instruction,
        data.source,
        f"{len(data.queries)} queries, {len(data.corpus)} docs",
        tuple(data.notes),
    )


def sts_task(data: StsData, *, seed: int = 42) -> EvalTask:
    """A local STS file as an mteb STS task (scores normalised by the file's own range)."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    name = _task_name(data.name)
    meta = TaskMetadata(
        type="STS", main_score="cosine_spearman", **_metadata_args(name, f"Local STS pairs from {data.source}")
    )
    lo, hi = data.score_range

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        s1, s2, sc = zip(*data.pairs, strict=True)
        self.dataset = DatasetDict(
            {"test": Dataset.from_dict({"sentence1": list(s1), "sentence2": list(s2), "score": list(sc)})}
        )
        self.data_loaded = True

    attrs = {"metadata": meta, "load_data": load_data, "min_score": lo, "max_score": hi}
    cls = type("LocalSTSTask", (AbsTaskSTS,), attrs)
    return EvalTask(name, "sts", cls(seed=seed), None, data.source, f"{len(data.pairs)} pairs", tuple(data.notes))


def mteb_tasks(names: list[str], benchmark: str | None) -> list[EvalTask]:
    """MTEB tasks by name and/or a benchmark's tasks; an unknown name is a usage error (exit 2)."""
    import mteb

    found: list[Any] = []
    if benchmark:
        try:
            found.extend(mteb.get_benchmark(benchmark).tasks)
        except (KeyError, ValueError) as e:
            raise UsageError(f"unknown MTEB benchmark {benchmark!r}: {_first_line(e)}") from None
    for n in names:
        try:
            found.append(mteb.get_task(n))
        except (KeyError, ValueError) as e:
            raise UsageError(f"unknown MTEB task {n!r}: {_first_line(e)}") from None
    out: list[EvalTask] = []
    seen: set[str] = set()
    for t in found:
        if t.metadata.name in seen:
            continue
        seen.add(t.metadata.name)
        out.append(EvalTask(t.metadata.name, str(t.metadata.type), t, None, f"mteb:{t.metadata.dataset['path']}"))
    return out


def load_task_data(t: EvalTask) -> None:
    """Load a task's data now, so a missing dataset fails before any encoding (exit 1, one line)."""
    if t.task.data_loaded:
        return
    try:
        t.task.load_data()
    except Exception as e:  # datasets/huggingface_hub raise many types when offline
        hint = ""
        if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
            hint = " (offline: HF_HUB_OFFLINE is set and the data is not in the Hugging Face cache)"
        raise RuntimeFailure(
            f"MTEB task {t.name}: its data could not be fetched{hint}: {type(e).__name__}: {_first_line(e)}"
        ) from None


def _first_line(e: BaseException) -> str:
    raw = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
    text = str(raw).strip().removeprefix("KeyError: ").splitlines()
    return (text[0] if text else type(e).__name__)[:300]
