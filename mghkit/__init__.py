"""mghkit: multi-granularity hard negatives and anchor-token-aware pooling for LLM embedders.

The front door. Every stage of the pipeline is one function here, the same function the CLI
command calls::

    import mghkit
    tasks = mghkit.brainstorm(model="local", n_tasks=10)
    triplets, rejects = mghkit.generate(tasks, model="local")      # or: await mghkit.agenerate(...)
    clean, rejects, report = mghkit.validate_triplets(triplets)
    examples = mghkit.curriculum(clean, schedule="coarse-to-fine")
    run = mghkit.fine_tune(examples, base_model="local", steps=24, out="runs/x")
    vectors = mghkit.load_encoder("runs/x").encode(["sodium latin name"])   # numpy
    results = mghkit.evaluate(models=["local", "runs/x"], beir=["held_out/"])

Names are resolved lazily (PEP 562): ``import mghkit`` imports no heavy library (torch,
transformers, litellm, peft, mteb); each is imported by the first call that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# name -> module that defines it. A function must not share its name with a submodule of this
# package: importing that submodule would rebind the attribute to the module.
_EXPORTS: dict[str, str] = {
    # synthesis (an LLM through LiteLLM)
    "brainstorm": "mghkit.synth.brainstorm",
    "abrainstorm": "mghkit.synth.brainstorm",
    "generate": "mghkit.synth.generate",
    "agenerate": "mghkit.synth.generate",
    "batch_status": "mghkit.llm.ledger",
    # data
    "mine": "mghkit.mining",
    "validate_triplets": "mghkit.validate",
    "curriculum": "mghkit.schedules",
    # model
    "fine_tune": "mghkit.train.run",
    "load_encoder": "mghkit.model.encoder",
    "Encoder": "mghkit.model.encoder",
    "EncoderConfig": "mghkit.model.config",
    "evaluate": "mghkit.evaluation.run",
    "export": "mghkit.exporting.run",
    "ablate": "mghkit.ablation.run",
    # records and files
    "Task": "mghkit.schema",
    "Triplet": "mghkit.schema",
    "HardNegative": "mghkit.schema",
    "Example": "mghkit.schema",
    "Reject": "mghkit.schema",
    "RejectReason": "mghkit.schema",
    "LEVELS": "mghkit.schema",
    "read_jsonl": "mghkit.jsonl",
    "write_jsonl": "mghkit.jsonl",
    # errors
    "MghkitError": "mghkit.errors",
    "UsageError": "mghkit.errors",
    "InputError": "mghkit.errors",
    "RuntimeFailure": "mghkit.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mghkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from mghkit.ablation.run import ablate  # noqa: F401
    from mghkit.errors import InputError, MghkitError, RuntimeFailure, UsageError  # noqa: F401
    from mghkit.evaluation.run import evaluate  # noqa: F401
    from mghkit.exporting.run import export  # noqa: F401
    from mghkit.jsonl import read_jsonl, write_jsonl  # noqa: F401
    from mghkit.mining import mine  # noqa: F401
    from mghkit.model.config import EncoderConfig  # noqa: F401
    from mghkit.model.encoder import Encoder, load_encoder  # noqa: F401
    from mghkit.schedules import curriculum  # noqa: F401
    from mghkit.schema import LEVELS, Example, HardNegative, Reject, RejectReason, Task, Triplet  # noqa: F401
    from mghkit.synth.brainstorm import abrainstorm, brainstorm  # noqa: F401
    from mghkit.synth.generate import agenerate, generate  # noqa: F401
    from mghkit.train.run import fine_tune  # noqa: F401
    from mghkit.validate import validate_triplets  # noqa: F401
