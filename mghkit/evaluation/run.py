"""``mghkit.evaluate``: tasks x rows (models, poolings, baselines), scored by mteb, as one report.

The CLI's ``eval`` calls exactly this function and prints the tables; a notebook passes model
names or loaded objects::

    import mghkit
    enc = mghkit.load_encoder("runs/x")
    report = mghkit.evaluate([enc, "minilm"], poolings=["mean", "ata"], baselines=["bm25"],
                             max_queries=50, max_docs=200, max_pairs=200, max_length=128)
    report.scores()        # {row label: {task: main score}}
    report.rows            # one dict per row: every metric, encoding cost, settings

Progress lines go to the ``mghkit.evaluation`` loggers (the CLI prints them on stderr).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mghkit.errors import UsageError
from mghkit.evaluation.report import EvalReport, ReportNotWritten, check_out
from mghkit.evaluation.spec import DEFAULT_STS_INSTRUCTION, EvalSpec, build_tasks, read_local
from mghkit.files import OutputLock, check_distinct_outputs, is_special
from mghkit.paths import cache_dir as cache_root

if TYPE_CHECKING:
    from mghkit.evaluation.encoder_adapter import Progress

log = logging.getLogger(__name__)

__all__ = ["EvalReport", "EvalSpec", "ReportNotWritten", "evaluate"]


def evaluate(
    models: Any = None,
    *,
    beir: Sequence[str | Path] | str | Path = (),
    sts: Sequence[str | Path] | str | Path = (),
    tasks: Sequence[str] | str = (),
    benchmark: str | None = None,
    poolings: Sequence[str] | str | None = None,
    baselines: Sequence[str] | str = (),
    out: str | Path | None = None,
    instruction: str | None = None,
    sts_instruction: str | None = DEFAULT_STS_INSTRUCTION,
    max_length: int | None = None,
    batch_size: int = 8,
    max_queries: int | None = None,
    max_docs: int | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    causal: bool = False,
    dtype: str | None = None,
    device: str | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    output_folder: str | Path | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Evaluate embedders on local BEIR / STS data and MTEB tasks (scored by mteb), one row each.

    ``models``: one model or a list; each a name (``local``, ``minilm``, a run dir, a HF id or
    dir, a sentence-transformers dir), an ``mghkit.Encoder`` or a ``SentenceTransformer`` object
    (used as loaded: ``device`` and ``dtype`` apply to models given by name). None: ``local``.
    ``poolings`` compares several poolings of each mghkit encoder (one forward pass serves them
    all); ``baselines=["bm25"]`` adds the lexical baseline on retrieval tasks. With no task
    option the bundled offline suite runs. ``max_queries`` / ``max_docs`` / ``max_pairs`` cut
    deterministic subsets (``seed``). ``instruction``: the query instruction for retrieval (None:
    per task; "": none). ``cache``: the on-disk embedding cache under ``cache_dir``. ``out``:
    also write the JSON report there after every row (``-``, a device or a FIFO: once, at the
    end). ``out`` may not be one of the inputs (a data file, by any name) and is locked for the
    run; a report that cannot be written at the end raises :class:`ReportNotWritten` (``.report``).
    ``output_folder``: also write mteb's own results layout there (``results/<name>/<revision>/
    <task>.json`` and ``model_meta.json``, by mteb's ``ResultCache``), one ModelMeta per row
    (``mghkit/<model dir name>``, revision a hash of the row's identity): ``mteb.ResultCache(
    output_folder).load_results()`` reads the same scores back. ``device``: None is ``cuda`` when
    torch sees a GPU, else ``cpu``. ``progress(description, done, total)`` follows the encoding.

    BM25 on a subset of the bundled suite (no model needed):

    >>> report = evaluate([], baselines=["bm25"], max_queries=5, max_docs=20, max_pairs=4, cache=False)
    >>> [t["name"] for t in report.tasks], list(report.scores())
    (['manpages-retrieval', 'simlex999-sts'], ['bm25'])
    >>> 0 < report.scores()["bm25"]["manpages-retrieval"] <= 1
    True
    """
    given = models is not None
    spec = EvalSpec(
        models=_as_list(models) if given else ["local"],
        poolings=_as_list(poolings) or None,
        beir=[str(x) for x in _as_list(beir)],
        sts=[str(x) for x in _as_list(sts)],
        tasks=_as_list(tasks),
        benchmark=benchmark,
        baselines=_as_list(baselines),
        instruction=instruction,
        sts_instruction=sts_instruction,
        max_length=max_length,
        batch_size=batch_size,
        seed=seed,
        causal=causal,
        dtype=dtype,
        max_queries=max_queries,
        max_docs=max_docs,
        max_pairs=max_pairs,
        device=device,
        cache=cache,
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    from mghkit.evaluation.cache import CACHE_FILE, check_cache_path

    spec.check()
    cache_path = cache_root(spec.cache_dir) / CACHE_FILE if spec.cache else None
    if cache_path is not None:
        check_cache_path(cache_path)
    if output_folder is not None:
        folder = Path(output_folder)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: not a directory (--output-folder is mteb's results folder)")
    if out is not None:
        check_out(out)
        check_distinct_outputs(spec.input_files() + ([cache_path] if cache_path else []), out=out)
    lock = OutputLock(out, what="writing an eval report to") if out is not None and _regular(out) else nullcontext()
    with lock:
        beir_data, sts_data = read_local(spec)  # bad local data fails here, before mteb or a model is loaded
        if not given:
            log.info("no model given: using `local` (the embedded SmolLM2-135M decoder)")
        if spec.bundled:
            log.info("no task option given: running the bundled suite (man-pages retrieval, SimLex-999)")
        results = None
        if output_folder is not None:
            from mteb import ResultCache

            results = ResultCache(output_folder)  # creates the folder
        with _random_state_kept(spec.seed):
            return _run(spec, beir_data, sts_data, out, cache_path, results, progress)


def _run(
    spec: EvalSpec,
    beir_data: list[Any],
    sts_data: list[Any],
    out: str | Path | None,
    cache_path: Path | None,
    results: Any = None,
    progress: Progress | None = None,
) -> EvalReport:
    import mteb
    import torch

    from mghkit.evaluation.cache import EmbeddingCache

    run_tasks = build_tasks(spec, beir_data, sts_data)
    for t in run_tasks:
        log.info("task %s: %s (%s)%s", t.name, t.size or t.source, t.main_score, "".join(f"; {n}" for n in t.notes))
    labels = _labels(spec.models)
    settings = {**spec.to_dict(labels), "cache_file": str(cache_path) if cache_path else None}
    settings["torch_threads"] = torch.get_num_threads()
    report = EvalReport(versions=versions(), settings=settings, tasks=[_task_entry(t) for t in run_tasks])
    store = EmbeddingCache(cache_path or ":memory:")
    saver = _ReportSaver(out)
    unique: dict[Any, tuple[Any, str]] = {}
    for m, label in zip(spec.models, labels, strict=True):
        unique.setdefault(_key(m), (m, label))
    try:
        for model, label in unique.values():
            from mghkit.evaluation.models import load_rows

            for row in load_rows(model, label, spec, store):
                row.encoder.progress = progress
                try:
                    _evaluate_row(mteb, row, run_tasks, spec.batch_size, report, results)
                finally:
                    row.encoder.close()
                saver.after_row(report)
        for b in dict.fromkeys(spec.baselines):
            from mghkit.evaluation.bm25 import BM25Search
            from mghkit.evaluation.models import Row

            search = BM25Search()
            meta = search.mteb_model_meta
            row = Row(b, b, "-", "bm25", search, {"dtype": None, "max_length": None}, meta.name, meta.revision)
            _evaluate_row(mteb, row, [t for t in run_tasks if t.is_retrieval], spec.batch_size, report, results)
            saver.after_row(report)
    finally:
        store.close()
    saver.finish(report)
    return report


@contextmanager
def _random_state_kept(seed: int) -> Iterator[None]:
    """Seeded inside, and the caller's random streams as they were afterwards: mteb seeds the
    global generators of python, numpy and torch whenever it builds a task or an evaluator."""
    import random

    import numpy as np
    import torch

    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(seed)
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _as_list(value: Any) -> list[Any]:
    """One value or a list/tuple of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _key(model: Any) -> Any:
    """Models given twice run once: the same name, or the same object."""
    return model if isinstance(model, str) else id(model)


def _labels(models: list[Any]) -> list[str]:
    """Row labels: a name as given, an object's name; distinct objects with one name get #2, #3."""
    from mghkit.evaluation.models import model_label

    seen: dict[str, list[Any]] = {}
    out = []
    for m in models:
        label = model_label(m)
        same = seen.setdefault(label, [])
        if not any(_key(x) == _key(m) for x in same):
            same.append(m)
        n = next(i for i, x in enumerate(same) if _key(x) == _key(m))
        out.append(label if n == 0 else f"{label}#{n + 1}")
    return out


def _regular(out: str | Path | None) -> bool:
    """``out`` is (or will be) a regular file, not ``-``, a device or a FIFO."""
    return out is not None and not is_special(out)


class _ReportSaver:
    """Where the report goes: a regular file after every row (an interrupted run keeps what it
    finished) and at the end; ``-``, a device or a FIFO once, at the end (a FIFO's reader sees
    one document, and a second open would wait for a reader that is gone).

    A failed save after a row does not stop the run: one warning line, the rows go on (their
    vectors are in the embedding cache either way), and the save at the end is tried again; if
    that one fails too, :class:`ReportNotWritten` carries the finished report.
    """

    def __init__(self, out: str | Path | None) -> None:
        self.out, self.failed = out, False

    def after_row(self, report: EvalReport) -> None:
        if not _regular(self.out) or self.failed:
            return
        try:
            report.save(self.out)  # type: ignore[arg-type]  # _regular: not None
        except OSError as e:
            self.failed = True
            log.warning("%s: cannot write the report (%s); going on with the other rows", self.out, e.strerror or e)

    def finish(self, report: EvalReport) -> None:
        if self.out is None:
            return
        try:
            report.save(self.out)
        except BrokenPipeError:  # `--out - | head`: the reader has gone, quietly
            raise
        except OSError as e:
            raise ReportNotWritten(self.out, e, report) from None


def _task_entry(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "type": t.kind,
        "main_score": t.main_score,
        "source": t.source,
        "size": t.size,
        "instruction": t.instruction,
        "notes": list(t.notes),
    }


def versions() -> dict[str, str]:
    from mghkit import __version__  # the code that ran (an editable install's metadata can be stale)

    out = {"python": platform.python_version(), "mghkit": __version__}
    for pkg in ("mteb", "transformers", "torch", "sentence-transformers", "peft", "numpy", "rank-bm25"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _evaluate_row(
    mteb: Any, row: Any, tasks: list[Any], batch_size: int, report: EvalReport, results: Any = None
) -> None:
    """Score one row on every task with ``mteb.evaluate``; ``results`` (an mteb ``ResultCache``)
    also gets mteb's result files."""
    from mghkit.evaluation.encoder_adapter import make_mteb_encoder, model_meta

    by_name = {t.name: t for t in tasks}
    if row.kind == "bm25":
        model = row.encoder
    else:

        def instruction_for(task_metadata: Any, prompt_type: Any) -> str | None:
            if row.kind == "sentence-transformers":  # the model's own stored prompts, as mteb picks them
                return row.encoder.inner.prompt_for(task_metadata, prompt_type)  # type: ignore[no-any-return]
            if str(getattr(prompt_type, "value", prompt_type)) == "document":
                return None
            t = by_name.get(task_metadata.name)
            return t.instruction if t else None

        meta = model_meta(row.name, row.revision, max_tokens=row.info.get("max_length"))
        model = make_mteb_encoder(row.encoder, meta, instruction_for)
    scores: dict[str, Any] = {}
    for t in tasks:
        t0 = time.perf_counter()
        res = mteb.evaluate(
            model,
            t.task,
            cache=results,
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
            show_progress_bar=False,
            overwrite_strategy="always",
            raise_error=True,
        )
        tr = res.task_results[0]
        main = float(tr.get_score())
        secs = time.perf_counter() - t0
        scores[t.name] = {"main_score": main, "metric": t.main_score, "seconds": round(secs, 2), "scores": tr.scores}
        log.info("%s on %s: %s %.4f (%.1f s)", row.label, t.name, t.main_score, main, secs)
    entry = {"label": row.label, "model": row.model, "pooling": row.pooling, "kind": row.kind, **row.info,
             "mteb_name": row.name, "mteb_revision": row.revision, "results": scores}  # fmt: skip
    if row.kind != "bm25":
        entry["identity"] = row.encoder.identity
        entry["encoding"] = row.encoder.stats.as_dict()
    report.rows.append(entry)
