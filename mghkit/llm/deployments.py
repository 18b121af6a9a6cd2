"""``--deployments FILE``: several deployments of one model (keys, endpoints, regions), as a
LiteLLM Router model list - load balancing, cooldown of a failing deployment, fallbacks to
another model group - for online and batch mode.

The file (YAML or JSON) holds no key, only the names of the environment variables that do::

    model_list:
      - model_name: gpt-4o                 # what --model names
        litellm_params:
          model: azure/gpt-4o-eu           # the LiteLLM model of this deployment
          api_base: https://eu.example.com
          api_key_env: AZURE_EU_KEY        # or api_key: os.environ/AZURE_EU_KEY
          rpm: 600
          tpm: 150000
    fallbacks: [{gpt-4o: [gpt-4o-mini]}]   # optional, as LiteLLM's Router takes them
    cooldown_time: 30                      # seconds a deployment rests after allowed_fails failures
    allowed_fails: 3

Anything else is refused (one line naming the file and the field, exit 2), so is a key written
into the file.

    >>> d = parse_deployments({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}]}, "d.yaml")
    >>> [(x.name, x.model) for x in d.entries]
    [('m', 'openai/x')]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mghkit.errors import InputError, UsageError

TOP_KEYS = {"model_list", "fallbacks", "cooldown_time", "allowed_fails", "routing_strategy"}
ENTRY_KEYS = {"model_name", "litellm_params", "model_info"}
PARAM_KEYS = {"model", "api_base", "api_key_env", "api_key", "api_version", "rpm", "tpm", "timeout", "organization"}
ENV_PREFIX = "os.environ/"


@dataclass
class Deployment:
    name: str  # the model group (--model)
    model: str  # the LiteLLM model of this deployment
    api_base: str | None = None
    key_env: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # rpm, tpm, api_version, ...

    def key(self) -> str | None:
        """The key from the environment (never stored), or a one-line UsageError."""
        if not self.key_env:
            return None
        value = os.environ.get(self.key_env, "")
        if not value:
            raise UsageError(f"--deployments: {self.key_env} (the key of {self.model}) is not set or empty")
        return value

    @property
    def label(self) -> str:
        return f"{self.model}@{self.api_base}" if self.api_base else self.model


@dataclass
class Deployments:
    path: str
    entries: list[Deployment]
    options: dict[str, Any]  # fallbacks, cooldown_time, allowed_fails, routing_strategy

    def group(self, name: str) -> list[Deployment]:
        """The deployments ``--model name`` reaches, or a UsageError listing the names there are."""
        found = [d for d in self.entries if d.name == name]
        if not found:
            names = ", ".join(sorted({d.name for d in self.entries}))
            raise UsageError(f"--model {name} is not a model_name of --deployments {self.path} (there: {names})")
        return found

    def router(self) -> Any:
        """A LiteLLM Router over every deployment (keys read from the environment now, in memory)."""
        from mghkit.llm.client import litellm_module

        model_list = []
        for d in self.entries:
            params = {"model": d.model, **d.params}
            if d.api_base:
                params["api_base"] = d.api_base
            key = d.key()
            if key:
                params["api_key"] = key
            elif d.api_base:
                params["api_key"] = "no-key"
            model_list.append({"model_name": d.name, "litellm_params": params})
        opts = {"num_retries": 0, "allowed_fails": 3, "cooldown_time": 30.0, **self.options}
        return litellm_module().Router(model_list=model_list, **opts)


def load_deployments(path: str | Path) -> Deployments:
    """Read and check a deployments file (YAML or JSON): an InputError naming file and field."""
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path=name)
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise InputError(f"not valid {'JSON' if p.suffix == '.json' else 'YAML'} ({' '.join(str(e).split())[:120]})",
                         path=name) from None  # fmt: skip
    return parse_deployments(data, name)


def parse_deployments(data: Any, name: str) -> Deployments:
    if not isinstance(data, dict):
        raise InputError("expected a mapping with model_list", path=name)
    for k in data:
        if k not in TOP_KEYS:
            raise InputError(f"unknown key (valid: {', '.join(sorted(TOP_KEYS))})", path=name, field=str(k))
    items = data.get("model_list")
    if not isinstance(items, list) or not items:
        raise InputError("expected a non-empty list", path=name, field="model_list")
    entries = []
    for i, item in enumerate(items):
        where = f"model_list.{i}"
        if not isinstance(item, dict):
            raise InputError("expected a mapping", path=name, field=where)
        for k in item:
            if k not in ENTRY_KEYS:
                raise InputError(
                    f"unknown key (valid: {', '.join(sorted(ENTRY_KEYS))})", path=name, field=f"{where}.{k}"
                )
        params = item.get("litellm_params")
        if not isinstance(item.get("model_name"), str) or not item["model_name"]:
            raise InputError("expected a model name", path=name, field=f"{where}.model_name")
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            raise InputError("expected a mapping with model", path=name, field=f"{where}.litellm_params")
        for k in params:
            if k not in PARAM_KEYS:
                raise InputError(f"unknown key (valid: {', '.join(sorted(PARAM_KEYS))})", path=name,
                                 field=f"{where}.litellm_params.{k}")  # fmt: skip
        key_env = params.get("api_key_env")
        if "api_key" in params:
            value = str(params["api_key"])
            if not value.startswith(ENV_PREFIX):
                raise InputError(f"a key is never written in the file: use api_key_env: NAME (or {ENV_PREFIX}NAME)",
                                 path=name, field=f"{where}.litellm_params.api_key")  # fmt: skip
            key_env = value[len(ENV_PREFIX) :]
        rest = {k: v for k, v in params.items() if k not in ("model", "api_base", "api_key_env", "api_key")}
        entries.append(Deployment(item["model_name"], params["model"], params.get("api_base"), key_env, rest))
    return Deployments(name, entries, {k: v for k, v in data.items() if k != "model_list"})
