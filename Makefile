# bigmodel: `make run` and `make test` set everything up themselves (a virtual environment in .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bigmodel-installed
# torch is installed first where there is no GPU, so the open range in pyproject.toml never pulls a multi-GB
# CUDA build there. Which build TORCH_SPEC gets depends on where pip looks: PyPI's Linux wheels of torch are
# CUDA builds; PyTorch's CPU index has the CPU build for every platform:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# TORCH_INDEX is empty by default: pip's own configuration decides (a machine without access to that index).
# Override TORCH_SPEC for another version.
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set nothing else
# does, so every stage process compiled mlflow, prefect and pandas again: 5.3 s of imports, 2.3 s compiled.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
MLFLOW_PORT ?=
PREFECT_PORT ?=

# Local, embedded defaults: Prefect's database under .prefect/, MLflow in mlflow.db (params.yaml).
# Only the targets that work on this workspace get PREFECT_HOME; `make test` does not (the tests
# give every run a Prefect home of its own and never touch this one).
PREFECT_HOME ?= $(CURDIR)/.prefect
run repro ui: export PREFECT_HOME := $(PREFECT_HOME)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install run test test-fast lint typecheck repro ui benchmark docs clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: torch comes from pyproject's range"; \
	  else echo "no GPU: installing torch first ($(TORCH_SPEC)$(if $(TORCH_INDEX), from $(TORCH_INDEX)))"; \
	    $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)"); fi; \
	fi
	$(BIN)/python -m pip install -q "uv>=0.5"
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt -e '.[test,lint]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/bigmodel run

# `make test` (what CI runs): every test, on TEST_WORKERS processes (pytest-xdist), each test file whole on one of
# them so that its module fixtures run once. `make test-fast`: the unit tier alone, what to run while you work.
# The tiers and what each costs: docs/testing.md.
# --durations=20 ends the report with the 20 slowest tests (setup, call and teardown apart): docs/testing.md's table.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m unit

# `make lint`: ruff (lint, then format --check) and mypy over the code below; runs all three, fails if any does.
# The tools come from pyproject's lint extra, pinned by constraints.txt. Fix: $(BIN)/ruff check --fix, $(BIN)/ruff format.
LINT_DIRS := bigmodel_core flows tasks
# flows/ and tasks/ are imported as bigmodel_flows and bigmodel_tasks (setup.py), which mypy cannot find through the
# editable install's import hook: it reads them through links of those names, and its messages give the real paths.
MYPY_PATH := .mypy_cache/links
MYPY = mkdir -p $(MYPY_PATH) && ln -sfn $(CURDIR)/flows $(MYPY_PATH)/bigmodel_flows \
	&& ln -sfn $(CURDIR)/tasks $(MYPY_PATH)/bigmodel_tasks && echo "mypy $(LINT_DIRS)" \
	&& (set -o pipefail; MYPYPATH=$(MYPY_PATH) $(BIN)/mypy -p bigmodel_core -p bigmodel_flows -p bigmodel_tasks \
	    | sed -E 's\#^$(MYPY_PATH)/bigmodel_(flows|tasks)/\#\1/\#')

lint: $(STAMP)
	@status=0; \
	echo "ruff check $(LINT_DIRS)"; $(BIN)/ruff check $(LINT_DIRS) || status=1; \
	echo "ruff format --check $(LINT_DIRS)"; $(BIN)/ruff format --check $(LINT_DIRS) || status=1; \
	$(MYPY) || status=1; \
	exit $$status

# mypy alone (the pre-commit hook's)
typecheck: $(STAMP)
	@$(MYPY)

repro: $(STAMP)
	$(BIN)/dvc repro

benchmark: $(STAMP)
	$(BIN)/python benchmarks/baseline.py --dataset $(or $(DATASET),demo)

# The docs site (mkdocs.yml, docs/) into site/; open site/index.html, or `.venv/bin/mkdocs serve` while writing.
# --strict: a broken link or anchor, a params key without a description, a stale reference fail the build. The
# reference pages are generated from the code by docs/hooks/reference.py. NO_MKDOCS_2_WARNING: Material's banner.
DOCS_STAMP := $(VENV)/.bigmodel-docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt -e '.[docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# `bigmodel ui`: MLflow UI and Prefect UI on this workspace's state, on 127.0.0.1, until Ctrl-C (which stops both);
# a port in use is refused before anything starts. Ports: make ui MLFLOW_PORT=5001 PREFECT_PORT=4201 (default:
# those used last here, else 5000 and 4200). While its Prefect server runs, .prefect/ui-server.json records it so
# that `bigmodel run` in this workspace reports there.
ui: $(STAMP)
	$(BIN)/bigmodel ui $(if $(MLFLOW_PORT),--mlflow-port $(MLFLOW_PORT)) $(if $(PREFECT_PORT),--prefect-port $(PREFECT_PORT))
