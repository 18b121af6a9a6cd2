"""``mghkit export`` cost, and what loading the export costs against ``mghkit.load_encoder``.

Two models: a tiny random Llama fine-tuned with LoRA for 4 steps (one a stage) (the run dir of
tests/test_export.py), and the embedded ``local`` SmolLM2-135M exported as it is (a run dir that
holds only ``mghkit_model.json`` with ``base_model: local``: no adapter, nothing to merge).
For each: the time of ``mghkit.export(run, format="sentence-transformers")`` into a new dir,
then the time to load the export with ``SentenceTransformer(DIR, trust_remote_code=True)``
against ``mghkit.load_encoder(run)``, interleaved within each repeat (after one untimed load of
each, so imports and the page cache are warm), and the largest gap between the two sets of
vectors as a check.

``MGHKIT_BENCH_REPEATS`` (default 3) changes the number of repeats.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

TEXTS = ["salt lamp", "the earth orbits the sun once a year", "grep prints lines matching a pattern in files"]
WORDS = [
    "grep",
    "file",
    "line",
    "pattern",
    "print",
    "match",
    "sort",
    "text",
    "stream",
    "column",
    "field",
    "shell",
    "pipe",
    "output",
    "input",
]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _tiny_run(home: Path) -> Path:
    """A tiny Llama fine-tuned with LoRA for 4 steps (one a stage)."""
    import mghkit
    from mghkit.model.tiny import save_tiny_model
    from mghkit.schema import LEVELS

    base = save_tiny_model(home / "base")
    rng = random.Random(0)
    with (home / "t.jsonl").open("w") as fp:
        for i in range(8):
            text = lambda k: " ".join(rng.choices(WORDS, k=k))  # noqa: E731
            rec = {"id": f"t{i}", "instruction": "Retrieve the manual page", "query": text(4),
                   "positive_example": text(12),
                   "hard_negative_examples": [{"similarity_level": lv, "text": text(10)} for lv in LEVELS]}  # fmt: skip
            fp.write(json.dumps(rec) + "\n")
    mghkit.fine_tune(str(home / "t.jsonl"), base_model=str(base), out=home / "run", steps=4, batch_size=2,
                     threads=1, lora_dropout=0.0, progress=False)  # fmt: skip
    return home / "run"


def _local_run(home: Path) -> Path:
    """The embedded 135M model as a run dir with no adapter (exported without training)."""
    from mghkit.model.config import EncoderConfig

    run = home / "local-run"
    EncoderConfig(base_model="local").save(run)
    return run


def _measure(run: Path, home: Path, repeats: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    import mghkit

    exports, st_loads, mg_loads, ratios = [], [], [], []
    out = home / f"{run.name}-export-0"
    mghkit.export(run, out=out)  # untimed: imports, and the first read of the weights
    SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    mghkit.load_encoder(str(run))
    st = enc = None
    for i in range(repeats):
        out = home / f"{run.name}-export-{i + 1}"
        secs, _ = _timed(partial(mghkit.export, run, out=out))
        exports.append(secs)
        st_s, st = _timed(partial(SentenceTransformer, str(out), trust_remote_code=True, device="cpu"))
        mg_s, enc = _timed(partial(mghkit.load_encoder, str(run)))
        st_loads.append(st_s)
        mg_loads.append(mg_s)
        ratios.append(st_s / mg_s)
    assert st is not None and enc is not None
    gap = float(np.abs(np.asarray(st.encode(TEXTS)) - np.asarray(enc.encode(TEXTS))).max())
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    return {"export": statistics.median(exports), "st": statistics.median(st_loads),
            "mghkit": statistics.median(mg_loads), "ratio": statistics.median(ratios), "gap": gap, "mb": size}  # fmt: skip


def run() -> str:
    import torch

    repeats = int(os.environ.get("MGHKIT_BENCH_REPEATS", "3"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mghkit-bench-export-") as tmp:
        home = Path(tmp)
        cases = {
            "tiny Llama (hidden 32), LoRA merged": _tiny_run(home),
            "SmolLM2-135M (`local`), no adapter": _local_run(home),
        }
        for name, run_dir in cases.items():
            m = _measure(run_dir, home, repeats)
            rows.append(
                f"| {name} | {m['mb']:.1f} | {m['export']:.2f} | {m['st']:.2f} | {m['mghkit']:.2f} | "
                f"{m['ratio']:.2f} | {m['gap']:.1e} |"
            )
    lines = [
        "## export (bench_export)",
        "",
        f'`mghkit.export(run, format="sentence-transformers")` into a new dir, then loading that export with '
        "`SentenceTransformer(DIR, trust_remote_code=True)` against `mghkit.load_encoder(run)`, on the CPU, "
        f"fp32, torch threads {torch.get_num_threads()}; median of {repeats} repeats, the two loads interleaved "
        "within each repeat after one untimed load of each (imports and the page cache warm). Ratio = median "
        "over repeats of (sentence-transformers load / mghkit load) in the same repeat. Max |diff| = largest gap "
        "between the two models' vectors for 3 texts.",
        "",
        "| run dir | export MB | export s | SentenceTransformer load s | mghkit.load_encoder s | ratio | "
        "max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "The export of the LoRA run merges the adapter into the weights; `mghkit.load_encoder(run)` loads the "
        "base and applies the adapter each time. The machine is shared, so the absolute seconds are noisy; "
        "the paired ratio is the figure to read.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
