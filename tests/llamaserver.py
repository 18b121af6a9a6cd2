"""Run llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server ARGS``),
unchanged apart from one load setting: llama.cpp's "extra buffer types" (weight repacking for AMX
tiles) are turned off, as :mod:`mghkit.llm.local` does, because where the CPU reports AMX but the
kernel does not grant it to the process (e.g. a Firecracker VM) the stock server dies with a
segfault on its first completion.

    python -m tests.llamaserver --model FILE.gguf --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import runpy
import sys
from typing import Any


def main() -> None:
    import llama_cpp.llama_cpp as capi

    default_params = capi.llama_model_default_params

    def params_without_extra_bufts() -> Any:
        p = default_params()
        p.use_extra_bufts = False
        return p

    capi.llama_model_default_params = params_without_extra_bufts
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
