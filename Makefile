# bigmodel: `make run` and `make test` set everything up themselves (a virtual environment in .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bigmodel-installed
# The CPU build of torch is installed first where there is no GPU, so the open range in
# pyproject.toml never pulls a multi-GB CUDA build there. Override TORCH_SPEC for another build.
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set nothing else
# does, so every stage process compiled mlflow, prefect and pandas again: 5.3 s of imports, 2.3 s compiled.
TORCH_SPEC ?= torch==2.13.0
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200

# Local, embedded defaults: Prefect's database under .prefect/, MLflow in mlflow.db (params.yaml).
# Only the targets that work on this workspace get PREFECT_HOME; `make test` does not (the tests
# give every run a Prefect home of its own and never touch this one).
PREFECT_HOME ?= $(CURDIR)/.prefect
run repro ui: export PREFECT_HOME := $(PREFECT_HOME)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PATH := $(CURDIR)/$(BIN):$(PATH)
# `make ui` writes this while its Prefect server runs ({"api_url": ..., "pid": ...}) and removes it
# when the server stops, so that `bigmodel run` in this workspace can report to that server.
UI_RECORD := $(CURDIR)/.prefect/ui-server.json
PREFECT_UI_API := http://127.0.0.1:$(PREFECT_PORT)/api

.PHONY: install run test repro ui benchmark clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: torch comes from pyproject's range"; \
	  else echo "no GPU: installing the CPU build ($(TORCH_SPEC))"; $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi; \
	fi
	$(BIN)/python -m pip install -q "uv>=0.5"
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/bigmodel run

test: $(STAMP)
	$(BIN)/python -m pytest -q

repro: $(STAMP)
	$(BIN)/dvc repro

benchmark: $(STAMP)
	$(BIN)/python benchmarks/baseline.py --dataset $(or $(DATASET),demo)

# Refuses to start `make ui` when a port is taken (the servers would fail, or talk to another workspace).
define PORTS_FREE
import socket, sys
for port in sys.argv[1:]:
    try:
        socket.create_server(("127.0.0.1", int(port))).close()
    except OSError:
        sys.exit(f"make ui: port {port} on 127.0.0.1 is already in use; "
                 "choose others: make ui MLFLOW_PORT=5001 PREFECT_PORT=4201")
endef

# Writes the record once the Prefect server answers /api/health (atomically), or nothing if it dies first.
define UI_RECORDER
import json, os, sys, time, urllib.request
record, api_url, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])

def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

def healthy():
    try:
        with urllib.request.urlopen(api_url + "/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False

while alive() and not healthy():
    time.sleep(0.5)
if alive():
    with open(record + ".tmp", "w") as f:
        json.dump({"api_url": api_url, "pid": pid}, f)
    os.replace(record + ".tmp", record)
    print(f"Prefect server at {api_url} recorded in {record}", flush=True)
endef

# Both servers bind 127.0.0.1 only. Each runs in a process group of its own (set -m) so that
# stopping `make ui` (Ctrl-C, kill) ends them and their workers and nothing else.
# PREFECT_UI_API_URL: the address the browser calls; without it the UI calls port 4200 whatever --port says.
ui: export PORTS_FREE := $(PORTS_FREE)
ui: export UI_RECORDER := $(UI_RECORDER)
ui: $(STAMP)
	@$(BIN)/python -c "$$PORTS_FREE" $(MLFLOW_PORT) $(PREFECT_PORT)
	@mkdir -p $(dir $(UI_RECORD))
	@echo "MLflow UI:  http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)"
	@echo "(Ctrl-C stops both)"
	@set -m; pids=; \
	stop() { trap - INT TERM EXIT; rm -f "$(UI_RECORD)"; \
	  for p in $$pids; do kill -TERM -- -$$p 2>/dev/null; done; wait; }; \
	trap 'stop; exit 130' INT; trap 'stop; exit 143' TERM; trap stop EXIT; \
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT) </dev/null & \
	pids="$$!"; \
	PREFECT_API_URL=$(PREFECT_UI_API) PREFECT_UI_API_URL=$(PREFECT_UI_API) \
	  $(BIN)/prefect --no-prompt server start --host 127.0.0.1 --port $(PREFECT_PORT) </dev/null & \
	prefect_pid=$$!; pids="$$pids $$prefect_pid"; \
	$(BIN)/python -c "$$UI_RECORDER" "$(UI_RECORD)" $(PREFECT_UI_API) $$prefect_pid </dev/null & \
	pids="$$pids $$!"; \
	wait
