# tinyzoo: `make serve` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet -c constraints.txt
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODELS := digit-resnet digit-inception name-gru char-rnn-hello char-rnn-shakespeare
CHROMIUM := /usr/bin/chromium

# The torch build (deploy/install-torch.sh, which the Dockerfile runs too): cpu, cuda (CUDA 12.8)
# or pypi (whatever pip's index serves). Default: cuda where an NVIDIA driver answers, else cpu.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),cuda,cpu)

.PHONY: install install-dev install-train browser serve test lint typecheck data train \
	train-lecture bench bench-digits soak container-check clean

# One virtual environment, filled in layers, each reinstalled only when its inputs change:
# serving (install), + training (install-train), + tests, linters and tools (install-dev).
install: $(VENV)/.serve
install-train: $(VENV)/.train
install-dev: $(VENV)/.dev

$(VENV)/.torch-$(TORCH): constraints.txt deploy/install-torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	rm -f $(VENV)/.torch-*
	sh deploy/install-torch.sh $(TORCH) $(PY)
	touch $@

$(VENV)/.serve: $(VENV)/.torch-$(TORCH) pyproject.toml
	$(PIP) -e .
	touch $@

$(VENV)/.train: $(VENV)/.serve
	$(PIP) -e '.[train]'
	touch $@

$(VENV)/.dev: $(VENV)/.serve
	$(PIP) -e '.[dev]'
	touch $(VENV)/.train $@

# glibc settings that keep memory flat under load without slowing the models down: explained at
# app.memory.ALLOCATOR_ENV, which bench/ and a test hold these to.
MALLOC_ENV := MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=16777216
# The launcher (app/__main__.py): uvicorn with TINYZOO_WORKERS processes, each with one torch
# thread as in the image and the Deployment (several threads in one process start slower and
# serve no faster here); for more cores, more workers: `make serve TINYZOO_WORKERS=2`.
TINYZOO_WORKERS ?= 1
TINYZOO_THREADS ?= 1
serve: install
	$(MALLOC_ENV) TINYZOO_HOST=$(HOST) TINYZOO_PORT=$(PORT) TINYZOO_WORKERS=$(TINYZOO_WORKERS) \
		TINYZOO_THREADS=$(TINYZOO_THREADS) $(PY) -m app

test: install-dev
	@test -x $(CHROMIUM) || echo "No $(CHROMIUM): the browser tests are skipped. 'make browser' installs it."
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The browser tests (tests/app/test_demo_browser.py: the demo page, and /docs with every request
# off the host blocked) drive Debian's Chromium through Playwright, never a browser Playwright
# downloads. This installs the chromium package system-wide with apt-get: about 25 packages,
# 400 MB with its libraries, through sudo unless you are root. `make test` runs without it.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@if test -x $(CHROMIUM); then echo "$(CHROMIUM) is installed"; else \
		echo "Installing Debian's chromium (about 400 MB) with apt-get, for the browser tests"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; fi

lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install-dev
	$(PY) -m mypy

# The data sets training reads, downloaded from their public sources and checked against their
# sha256 (training/fetch.py); files already in place are kept. DATA_DIR=... writes elsewhere
# (default: $TINYZOO_DATA_DIR, else ../shared/data), MIRROR=URL_OR_DIR fetches from a mirror.
data: install-train
	$(PY) -m training data fetch $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(MIRROR),--mirror $(MIRROR))

# Full default recipes, one after another (about an hour on 2 cores); writes weights/<model>/.
train: install-train
	for m in $(MODELS); do $(PY) -m training $$m || exit 1; done

# The lecture's own hyperparameters (the lecture column of docs/training.md), into build/lecture.
train-lecture: install-train
	for m in digit-inception digit-resnet name-gru; do \
		$(PY) -m training $$m --recipe lecture --out build/lecture || exit 1; done

# Serving throughput and latency (writes bench/RESULTS.md); needs wrk, and LitServe for the peer.
bench: install-dev
	command -v wrk >/dev/null || apt-get install -y wrk
	$(PIP) 'litserve==0.2.19'
	$(PY) -m bench.serve_bench

# Mixed traffic at concurrency 64 for 5 minutes (MINUTES=...), and a decompression bomb.
MINUTES ?= 5
soak: install-dev
	$(PY) -m bench.soak --minutes $(MINUTES)

# The Dockerfile's install steps and CMD, run without a Docker engine (see deploy/container_check.py).
container-check: install
	$(PY) -m deploy.container_check

# Accuracy of both digit models on realistic photos and scans made from MNIST test digits.
bench-digits: install-dev
	$(PY) -m bench.realistic_digits

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
