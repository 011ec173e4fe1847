# orders: see README.md. `make` alone lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install protos lint format typecheck test check run bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

protos: $(STAMP) ## regenerate generated/ from protos/
	$(BIN)/python -m scripts.gen_protos

lint: $(STAMP) ## ruff
	$(BIN)/ruff check core server worker fundhouse clients gateway tests scripts bench

format: $(STAMP) ## ruff format + fix imports
	$(BIN)/ruff check --fix --select I core server worker fundhouse clients gateway tests scripts bench
	$(BIN)/ruff format core server worker fundhouse clients gateway tests scripts bench

typecheck: $(STAMP) ## mypy strict
	$(BIN)/mypy

test: $(STAMP) ## the whole test suite (starts its own redis-server)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

check: lint typecheck test ## lint, typecheck and test

run: $(STAMP) ## bring up Redis (private unless configured), server, worker and fundhouse
	$(BIN)/python -m scripts.run_stack

bench: $(STAMP) ## benchmarks (about 13 min; FULL=1 for the whole matrix), writes BENCHMARKS.md
	$(BIN)/python -m bench.run

clean: ## remove the virtualenv and var/
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
