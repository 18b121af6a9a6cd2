"""``mghkit ablate`` overhead: the grid against the same cells run by hand, and evaluation reuse.

A tiny random Llama (tests' model) trained on 16 triplets and scored on a toy BEIR set: a grid
of 2 schedules x 1 pooling x 2 seeds (4 cells, 4 steps each) plus the untrained base under two
poolings. Measured side by side in each repeat:

- ``mghkit.ablate`` (one call: every cell, every evaluation, the report);
- the same work by hand in one process: ``mghkit.fine_tune`` + ``mghkit.evaluate`` per cell,
  ``mghkit.evaluate`` of the base with both poolings;
- the same work by hand with the commands: ``mghkit train`` + ``mghkit eval`` per cell and one
  ``mghkit eval --pooling mean,ata`` for the base (each a new process, as a user would type them).

Evaluation reuse: the base's texts are encoded once for all its poolings (the second pooling's
row encodes none), and no cell encodes the base again.

``MGHKIT_BENCH_REPEATS`` (default 2) changes the number of repeats.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS, SEEDS, SCHEDULES, POOLINGS = 4, (0, 1), ("coarse-to-fine", "random"), ("mean", "ata")
TRAIN = {"batch_size": 2, "save_every": 4, "gradient_checkpointing": False, "max_length": 96}


def _data(root: Path) -> tuple[Path, Path]:
    from tests.evaluation.conftest import write_beir
    from tests.train.conftest import write_triplets

    return write_triplets(root / "triplets.jsonl", n=16), write_beir(root / "beir")


def _ablate(model: Path, triplets: Path, beir: Path, out: Path) -> dict[str, Any]:
    import mghkit

    t0 = time.perf_counter()
    report = mghkit.ablate(triplets, out=out, eval_beir=[beir], base_model=str(model), schedules=SCHEDULES,
                           poolings=POOLINGS[:1], seeds=len(SEEDS), steps=STEPS, max_length=TRAIN["max_length"],
                           train_options={k: v for k, v in TRAIN.items() if k != "max_length"})  # fmt: skip
    base = json.loads((out / "base" / "ablation_eval.json").read_text())
    return {"seconds": time.perf_counter() - t0, "rows": len(report.rows),
            "base_encoded": [r["encoding"]["texts_encoded"] for r in base["rows"]]}  # fmt: skip


def _cells() -> list[tuple[str, int]]:
    return [(s, seed) for s in SCHEDULES for seed in SEEDS]


def _by_hand_in_process(model: Path, triplets: Path, beir: Path, out: Path) -> float:
    import mghkit

    t0 = time.perf_counter()
    enc = mghkit.load_encoder(model, max_length=TRAIN["max_length"])
    mghkit.evaluate([enc], beir=[beir], poolings=POOLINGS[:1], cache=False, max_length=TRAIN["max_length"])
    for schedule, seed in _cells():
        run = out / f"{schedule}-{seed}"
        mghkit.fine_tune(triplets, out=run, base_model=str(model), schedule=schedule, pooling=POOLINGS[0], seed=seed,
                         steps=STEPS, progress=False, **TRAIN)  # fmt: skip
        mghkit.evaluate([str(run)], beir=[beir], cache=False, max_length=TRAIN["max_length"])
    return time.perf_counter() - t0


def _by_hand_commands(model: Path, triplets: Path, beir: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def mghkit(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "mghkit", *args], check=True, env=env, capture_output=True)

    common = ["--max-length", str(TRAIN["max_length"])]
    t0 = time.perf_counter()
    mghkit("eval", "--model", str(model), "--pooling", POOLINGS[0], "--beir", str(beir), "--no-cache", "-q", *common)
    for schedule, seed in _cells():
        run = out / f"{schedule}-{seed}"
        mghkit("train", str(triplets), "--out", str(run), "--base-model", str(model), "--schedule", schedule,
               "--pooling", POOLINGS[0], "--seed", str(seed), "--steps", str(STEPS), "--batch-size", "2",
               "--save-every", "4", "--no-gradient-checkpointing", "-q", *common)  # fmt: skip
        mghkit("eval", "--model", str(run), "--beir", str(beir), "--no-cache", "-q", *common)
    return time.perf_counter() - t0


def _reuse(model: Path, triplets: Path, beir: Path, out: Path) -> list[int]:
    """Texts encoded for the base rows of a grid with both poolings (one cell, one seed)."""
    import mghkit

    mghkit.ablate(triplets, out=out, eval_beir=[beir], base_model=str(model), schedules="coarse-to-fine",
                  poolings=POOLINGS, seeds=1, steps=STEPS, max_length=TRAIN["max_length"],
                  train_options={k: v for k, v in TRAIN.items() if k != "max_length"})  # fmt: skip
    base = json.loads((out / "base" / "ablation_eval.json").read_text())
    return [r["encoding"]["texts_encoded"] for r in base["rows"]]


def run() -> str:
    from mghkit.cli.setup import setup_ablate
    from mghkit.model.tiny import save_tiny_model

    setup_ablate()
    import mteb  # noqa: F401 - warm: the first timed call must not pay the imports the others skip
    import peft  # noqa: F401
    import transformers  # noqa: F401

    repeats = int(os.environ.get("MGHKIT_BENCH_REPEATS", "2"))
    grid_s, hand_s, cmd_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = save_tiny_model(root / "tiny", family="llama")
        triplets, beir = _data(root)
        for r in range(repeats):  # interleaved: the machine's load hits the three alike
            grid_s.append(_ablate(model, triplets, beir, root / f"grid{r}")["seconds"])
            hand_s.append(_by_hand_in_process(model, triplets, beir, root / f"hand{r}"))
            cmd_s.append(_by_hand_commands(model, triplets, beir, root / f"cmd{r}"))
        encoded = _reuse(model, triplets, beir, root / "reuse")
    g, h, c = (statistics.median(x) for x in (grid_s, hand_s, cmd_s))
    cells = len(_cells())
    return (
        "## ablate: grid overhead and evaluation reuse\n\n"
        f"A tiny random Llama, {cells} cells ({len(SCHEDULES)} schedules x 1 pooling x {len(SEEDS)} seeds, "
        f"{STEPS} steps each) + the base, scored on a toy BEIR set; median of {repeats} interleaved repeats "
        "on a shared, noisy 2-core machine (three other jobs were running).\n\n"
        "| the same cells | wall s | ablate / this |\n|---|---|---|\n"
        f"| `mghkit.ablate` (one call, with its report) | {g:.1f} | 1.00 |\n"
        f"| by hand in one process (`fine_tune` + `evaluate`) | {h:.1f} | {g / h:.2f} |\n"
        f"| by hand with the commands (`mghkit train` + `mghkit eval`) | {c:.1f} | {g / c:.2f} |\n\n"
        f"Evaluation reuse: the base under {len(POOLINGS)} poolings encoded {encoded[0]} texts for the first "
        f"and {encoded[1]} for the second (one forward pass serves every pooling); the cells never re-encode it.\n"
    )


if __name__ == "__main__":
    print(run())
