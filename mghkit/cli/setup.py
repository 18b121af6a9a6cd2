"""Process-wide set-up: the one place that changes global state (environment variables,
warning filters, library log levels, gc). Library modules never do; the CLI calls these at the
edge, before the command's library call (as fastapi-cli's ``setup_logging``)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import warnings
from typing import Any


def setup_common(verbose: bool = False) -> None:
    """Every command: mghkit's module loggers print to stderr (INFO, or DEBUG with -v)."""
    logger = logging.getLogger("mghkit")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("mghkit: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        signal.signal(signal.SIGTERM, _terminated)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so every ``with`` block cleans up (temp files
    removed, locks released, worker processes stopped) as it does for Ctrl-C."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def setup_synth(model: str | None = None) -> None:
    """brainstorm / generate: LiteLLM offline and quiet; the embedded model's threads polite.

    LiteLLM is imported here (2-3 s) unless ``model`` is the embedded one, which does not need it.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import
    # its pydantic models warn about ReadOnly TypedDict items at import and on first use
    warnings.filterwarnings("ignore", message=".*ReadOnly.*", category=UserWarning)
    # LiteLLM 1.110's afile_content (batch mode's download) leaves a spare coroutine behind: not ours, harmless
    warnings.filterwarnings("ignore", message="coroutine 'OpenAIFilesAPI.afile_content' was never awaited",
                            category=RuntimeWarning)  # fmt: skip
    if model == "local":
        # OpenMP threads wait passively (read when libgomp loads, i.e. before the model's first
        # call): with it the embedded model runs two threads, without it one (mghkit.llm.local)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return
    from mghkit.llm.client import litellm_module

    litellm = litellm_module()
    litellm.suppress_debug_info = True  # no banners on stdout, which may be the output file
    litellm.telemetry = False
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    # LiteLLM's import leaves ~370k objects that every full garbage collection walks again
    # (~0.25 s each, several per thousand requests); they live as long as the process, so move
    # them out of the collector's sight
    gc.collect()
    gc.freeze()


def setup_model() -> None:
    """Commands that load torch models (train, pool-inspect, eval, validate --check-levels):
    no transformers load reports (the unused LM head) or progress bars, no known-harmless notes."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # a harmless CPU-kernel note on import
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (e.g. the CLI called in-process)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    # transformers 5 deprecates the name peft still calls when checkpointing is on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated")


def setup_eval(threads: int | None = None, cache_dir: str | None = None) -> None:
    """eval: mteb's result cache under mghkit's cache dir (``import mteb`` creates it), the
    libraries' progress bars and INFO logs off (stderr is for mghkit's lines), torch CPU threads."""
    from mghkit.paths import cache_dir as cache_root

    setup_model()
    os.environ.setdefault("MTEB_CACHE", str(cache_root(cache_dir) / "mteb"))
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("mteb", "datasets", "sentence_transformers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if threads:
        import torch

        torch.set_num_threads(threads)


def setup_ablate(threads: int | None = None) -> None:
    """ablate: what eval and train set up, and the per-task evaluation lines quiet (the grid's
    progress bar and its report replace them)."""
    setup_eval(threads=threads)
    logging.getLogger("mghkit.evaluation").setLevel(logging.WARNING)
