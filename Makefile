# bigmodel: `make run` and `make test` set everything up themselves (a virtual environment in .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bigmodel-installed
# The CPU build of torch is installed first where there is no GPU, so the open range in
# pyproject.toml never pulls a multi-GB CUDA build there. Override TORCH_SPEC for another build.
TORCH_SPEC ?= torch==2.13.0
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200

# Local, embedded defaults: Prefect's database under .prefect/, MLflow in mlflow.db (params.yaml).
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install run test repro ui benchmark clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: torch comes from pyproject's range"; \
	  else echo "no GPU: installing the CPU build ($(TORCH_SPEC))"; $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi; \
	fi
	$(BIN)/python -m pip install -q "uv>=0.5"
	$(BIN)/uv pip install --python $(BIN)/python -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/bigmodel run

test: $(STAMP)
	$(BIN)/python -m pytest -q

repro: $(STAMP)
	$(BIN)/dvc repro

benchmark: $(STAMP)
	$(BIN)/python benchmarks/baseline.py --dataset $(or $(DATASET),demo)

ui: $(STAMP)
	@echo "MLflow UI:  http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)"
	@echo "(Ctrl-C stops both)"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT) & \
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) & \
	wait
