"""The scripted LLM client for unit tests of prompt logic (no network): it ships in the library
(:mod:`mghkit.llm.scripted`) so that docstring examples can use it too."""

from __future__ import annotations

from mghkit.llm.scripted import ScriptedClient

__all__ = ["ScriptedClient"]
