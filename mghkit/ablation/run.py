"""``mghkit.ablate``: train every cell of a (schedule x pooling x seed) grid with ``mghkit.fine_tune``,
score each with ``mghkit.evaluate``, and report the paper's claims (docs/ablations.md).

    import mghkit
    report = mghkit.ablate("triplets.jsonl", eval_beir=["held_out/"], schedules="coarse-to-fine,random",
                           poolings="mean,ata", seeds=3, steps=24, out="ablations/")
    print(report.markdown())

Layout of ``out``::

    cells/<schedule>__<pooling>__s<seed>/   an ordinary run dir (eval, pool-inspect, export load it)
        ablation_cell.json                   what it was trained with (a rerun with other settings stops)
        ablation_eval.json                   the cell's evaluation (reused by a rerun)
    base/ablation_eval.json                  the untrained base, every pooling from one forward pass
    data/                                    the default data (bundled man-pages split), when used
    ablation.json, ablation.md, ablation.png the report

A rerun skips finished cells (a run dir with its model and its evaluation), resumes a cell that
was interrupted from its last checkpoint (``fine_tune(resume=True)``; kill -9 safe: checkpoints
are written atomically every ``save_every`` steps) and starts the rest.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mghkit.ablation.data import check_leakage, default_data
from mghkit.ablation.grid import ALL_POOLINGS, BASE, Cell, Grid
from mghkit.ablation.report import AblationReport, build_report
from mghkit.errors import UsageError
from mghkit.jsonl import write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["ablate"]

EVAL_FILE = "ablation_eval.json"
CELL_FILE = "ablation_cell.json"
DEFAULT_SCHEDULES = ("coarse-to-fine", "fine-to-coarse", "random", "all", "fixed:high")
DEFAULT_POOLINGS = ("mean",)
DEFAULT_DECODER_POOLINGS = ("mean", "ata")
DEFAULT_SEEDS = 3
DEFAULT_STEPS = 30
DEFAULT_SAVE_EVERY = 10
EMBEDDED_ENCODER = "minilm"  # the embedded all-MiniLM-L6-v2 (mghkit.paths.embedded_minilm_path)

Progress = Callable[[str, int, int], None]


def ablate(
    triplets: str | Path | None = None,
    *,
    out: str | Path,
    eval_beir: Sequence[str | Path] | str | Path = (),
    eval_sts: Sequence[str | Path] | str | Path = (),
    tasks: Sequence[str] | str = (),
    base_model: str | None = None,
    schedules: str | Sequence[str] | None = None,
    poolings: str | Sequence[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    max_cells: int | None = None,
    instruction: str | None = None,
    max_length: int | None = None,
    eval_batch_size: int = 16,
    train_options: dict[str, Any] | None = None,
    config: str | Path | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> AblationReport:
    """Run the grid and return its :class:`AblationReport` (also written to ``out``).

    ``triplets``: a triplet file (Triplet records; each cell orders it with its schedule). None:
    the bundled man-pages split (training triplets mined with ``mghkit.mine``, held-out queries as
    the BEIR set). With no grid option (``schedules``, ``poolings``, ``seeds``) the small default
    grid runs (:data:`DEFAULT_SCHEDULES` x :data:`DEFAULT_POOLINGS` x 3 seeds, 30 steps).
    ``base_model``: default the embedded all-MiniLM-L6-v2 (``minilm``); ``local`` is the embedded
    SmolLM2-135M decoder. ``train_options``: any other ``fine_tune`` keyword (batch_size, lr,
    lora_r, ...), the same for every cell; ``config``: a ``training_args.json`` they start from.
    Every check (names, grid size against ``max_cells``, train options, leakage between the
    training file and the held-out sets) runs before the first cell trains.
    """
    out = Path(out)
    grid_given = schedules is not None or poolings is not None or seeds is not None
    base = _base_model_name(base_model)
    from mghkit.model.loading import is_sentence_encoder

    encoder = is_sentence_encoder(base)
    if poolings is None and not grid_given:
        poolings = DEFAULT_POOLINGS if encoder else DEFAULT_DECODER_POOLINGS
    elif poolings is None:  # every pooling that applies to the base
        poolings = [p for p in ALL_POOLINGS if not (encoder and p == "ata")]
    grid = Grid.parse(schedules=schedules if grid_given else DEFAULT_SCHEDULES, poolings=poolings,
                      seeds=seeds if seeds is not None else (DEFAULT_SEEDS if not grid_given else 1))  # fmt: skip
    if encoder and "ata" in grid.poolings:
        raise UsageError(f"--poolings ata: {base} is an encoder; ATA applies to decoders only "
                         "(choose from mean, last, weighted-mean)")  # fmt: skip
    grid.check_size(max_cells)
    steps = steps if steps is not None else DEFAULT_STEPS
    options = _train_options(train_options, max_length)
    beir, sts = _as_list(eval_beir), _as_list(eval_sts)
    if triplets is None:
        if beir or sts or tasks:
            raise UsageError("--eval-beir/--eval-sts/--tasks need a TRIPLETS file (without one, the bundled "
                             "man-pages split is both the training and the held-out data)")  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        triplets, held, default_instruction = default_data(out / "data")
        beir = [str(held)]
        instruction = instruction if instruction is not None else default_instruction
    elif not (beir or sts or tasks):
        raise UsageError("give held-out data to score the cells: --eval-beir DIR, --eval-sts FILE or --tasks")
    records = check_leakage(triplets, beir)
    _check_train_options(str(triplets), base, grid, steps, options, config, out)
    log.info("ablation: %d training records; %d cells (%d schedules x %d poolings x %d seeds) + %d base rows",
             records, len(grid.cells()), len(grid.schedules), len(grid.poolings), len(grid.seeds),
             len(grid.poolings))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    eval_args = {"beir": beir, "sts": sts, "tasks": _as_list(tasks), "instruction": instruction,
                 "max_length": options.get("max_length"), "batch_size": eval_batch_size}  # fmt: skip
    settings = {"triplets": str(triplets), "base_model": base, "encoder": encoder, "steps": steps,
                "train_options": options, "config": None if config is None else str(config), "eval": eval_args,
                "schedules": list(grid.schedules), "poolings": list(grid.poolings), "seeds": list(grid.seeds)}  # fmt: skip
    runner = _Runner(out, grid, base, str(triplets), steps, options, config, eval_args, threads, progress)
    runner.check_cells()
    scores, timings = runner.run()
    report = build_report(grid, scores, settings=settings, timings=timings)
    report.save(out)
    return report


def _base_model_name(base_model: str | None) -> str:
    if base_model is None or base_model == EMBEDDED_ENCODER:
        from mghkit.paths import embedded_minilm_path

        return str(embedded_minilm_path())
    if not base_model.strip():
        raise UsageError("--base-model: expected a model name or dir, got ''")
    return base_model


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]


def _train_options(options: dict[str, Any] | None, max_length: int | None) -> dict[str, Any]:
    options = {k: v for k, v in (options or {}).items() if v is not None}
    fixed = {"out", "schedule", "pooling", "seed", "steps", "resume", "base_model", "progress", "examples"}
    clash = sorted(fixed & set(options))
    if clash:
        raise UsageError(f"train option {clash[0]!r} is set by the grid itself; use the ablate option instead")
    if max_length is not None:
        options["max_length"] = max_length
    options.setdefault("max_length", 128)
    options.setdefault("save_every", DEFAULT_SAVE_EVERY)
    return options


def _check_train_options(triplets: str, base: str, grid: Grid, steps: int, options: dict[str, Any],
                         config: str | Path | None, out: Path) -> None:  # fmt: skip
    """Every schedule's training, checked and planned as ``fine_tune`` would (options, the whole
    file, steps against stages), before any cell trains. No torch, no model."""
    from dataclasses import replace

    from mghkit.train.args import make_args
    from mghkit.train.data import prepare

    for schedule in grid.schedules:
        given = {"base_model": base, "out": str(out / ".check"), "schedule": schedule, "pooling": grid.poolings[0],
                 "seed": grid.seeds[0], "steps": steps, **options}  # fmt: skip
        args = make_args(triplets, given, config=None if config is None else str(config))
        prepare(replace(args, resume=False))


class _Runner:
    """Trains and scores the cells in order, skipping what a previous run finished."""

    def __init__(self, out: Path, grid: Grid, base: str, triplets: str, steps: int, options: dict[str, Any],
                 config: Any, eval_args: dict[str, Any], threads: int | None, progress: Progress | None) -> None:  # fmt: skip
        self.out, self.grid, self.base, self.triplets, self.steps = out, grid, base, triplets, steps
        self.options, self.config, self.eval_args, self.threads = options, config, eval_args, threads
        self.progress = progress or (lambda desc, done, total: None)
        self.timings: dict[str, float] = {"train_s": 0.0, "eval_s": 0.0, "base_eval_s": 0.0}

    def run(self) -> tuple[dict[str, dict[str, dict[int | None, float]]], dict[str, float]]:
        """{row label: {metric: {seed: score}}} (the base rows' seed is None) and the time spent."""
        scores: dict[str, dict[str, dict[int | None, float]]] = {}
        cells = self.grid.cells()
        total = len(cells) + 1
        self.progress("base model", 0, total)
        for label, metrics in self._base().items():
            scores.setdefault(label, {}).update({m: {None: v} for m, v in metrics.items()})
        for i, cell in enumerate(cells, 1):
            self.progress(cell.name, i, total)
            for metric, value in self._cell(cell).items():
                scores.setdefault(cell.row, {}).setdefault(metric, {})[cell.seed] = value
        self.progress("done", total, total)
        return scores, self.timings

    def check_cells(self) -> None:
        """A cell dir trained with other settings (steps, options, base) is never mixed in: one line
        before anything trains."""
        for cell in self.grid.cells():
            file = self.out / "cells" / cell.name / CELL_FILE
            if not file.is_file():
                continue
            try:
                saved = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            wanted = json.loads(json.dumps(self._train_key(cell), default=str))
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            if changed:
                raise UsageError(f"{file.parent}: trained with other settings ({', '.join(changed)} differ); "
                                 "choose another --out, or remove that cell to train it again")  # fmt: skip

    def _evaluate(self, model: Any, poolings: list[str] | None) -> dict[str, Any]:
        import mghkit

        report = mghkit.evaluate([model], poolings=poolings, cache=False, **self.eval_args)
        return report.to_dict()

    def _base(self) -> dict[str, dict[str, float]]:
        """Every pooling of the untrained base from one forward pass (``Encoder.encode_poolings``)."""
        if not self.grid.base_rows:
            return {}
        file = self.out / BASE / EVAL_FILE
        done = _read_eval(file, self._key(None))
        if done is None:
            import mghkit

            t0 = time.perf_counter()
            file.parent.mkdir(parents=True, exist_ok=True)
            enc = mghkit.load_encoder(self.base, max_length=self.options.get("max_length"))
            done = self._evaluate(enc, list(self.grid.poolings))
            done["ablation_key"] = self._key(None)
            write_json_atomic(file, done)
            self.timings["base_eval_s"] += time.perf_counter() - t0
        return {f"{BASE} / {row['pooling']}": _metrics(done, row) for row in done["rows"]}

    def _cell(self, cell: Cell) -> dict[str, float]:
        import mghkit
        from mghkit.model.loading import RUN_CONFIG
        from mghkit.train.data import has_checkpoint

        run_dir = self.out / "cells" / cell.name
        file = run_dir / EVAL_FILE
        done = _read_eval(file, self._key(cell)) if (run_dir / RUN_CONFIG).is_file() else None
        if done is None:
            if not (run_dir / RUN_CONFIG).is_file():
                t0 = time.perf_counter()
                resume = has_checkpoint(run_dir)
                run_dir.mkdir(parents=True, exist_ok=True)
                write_json_atomic(run_dir / CELL_FILE, self._train_key(cell))
                log.info("cell %s: %s", cell.name, "resuming from its checkpoint" if resume else "training")
                mghkit.fine_tune(self.triplets, out=run_dir, base_model=self.base, schedule=cell.schedule,
                                 pooling=cell.pooling, seed=cell.seed, steps=self.steps, resume=resume,
                                 config=self.config, threads=self.threads, progress=False, **self.options)  # fmt: skip
                self.timings["train_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            done = self._evaluate(str(run_dir), None)
            done["ablation_key"] = self._key(cell)
            write_json_atomic(file, done)
            self.timings["eval_s"] += time.perf_counter() - t0
        return _metrics(done, done["rows"][0])

    def _train_key(self, cell: Cell) -> dict[str, Any]:
        """What a cell's training depends on (saved in the cell as ``ablation_cell.json``)."""
        return {"triplets": self.triplets, "base_model": self.base, "schedule": cell.schedule, "pooling": cell.pooling,
                "seed": cell.seed, "steps": self.steps, "train_options": self.options,
                "config": None if self.config is None else str(self.config)}  # fmt: skip

    def _key(self, cell: Cell | None) -> dict[str, Any]:
        """What a cached evaluation must match to be reused."""
        key = {"eval": self.eval_args, "base_model": self.base}
        if cell is None:
            return {**key, "poolings": list(self.grid.poolings)}
        return {**key, **self._train_key(cell)}


def _read_eval(file: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = json.loads(json.dumps(key, default=str)) == data.get("ablation_key")
    return data if same and data.get("rows") else None


def _metrics(report: dict[str, Any], row: dict[str, Any]) -> dict[str, float]:
    """{"<task> <metric>": main score} of one report row."""
    names = {t["name"]: t.get("main_score", "score") for t in report.get("tasks", [])}
    return {f"{task} {names.get(task, 'score')}": float(r["main_score"]) for task, r in row["results"].items()}
