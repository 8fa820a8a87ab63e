# tinyzoo: `make serve` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODELS := digit-resnet digit-inception name-gru char-rnn-hello char-rnn-shakespeare

.PHONY: install browser serve test lint typecheck train train-lecture bench bench-digits soak container-check clean

install: $(STAMP)

# Reinstalls only when the project's requirements change; constraints pin the CPU torch wheel.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# glibc settings that keep memory flat under load without slowing the models down: explained at
# app.memory.ALLOCATOR_ENV, which bench/ and a test hold these to.
MALLOC_ENV := MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=16777216
# The launcher (app/__main__.py): uvicorn with TINYZOO_WORKERS processes (default 1).
serve: install
	$(MALLOC_ENV) TINYZOO_HOST=$(HOST) TINYZOO_PORT=$(PORT) $(PY) -m app

test: install browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The demo page's browser test drives Debian's /usr/bin/chromium through Playwright (never a
# downloaded browser); playwright itself comes with the dev extras.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser: $(VENV)/.browser
$(VENV)/.browser: $(STAMP)
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }
	touch $@

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

# Full default recipes, one after another (about an hour on 2 cores); writes weights/<model>/.
train: install
	for m in $(MODELS); do $(PY) -m training $$m || exit 1; done

# The lecture's own hyperparameters, for the baseline table in the README (written to a temp dir).
train-lecture: install
	for m in digit-inception digit-resnet name-gru; do \
		$(PY) -m training $$m --recipe lecture --out build/lecture || exit 1; done

# Serving throughput and latency (writes bench/RESULTS.md); needs wrk, and LitServe for the peer.
bench: install
	command -v wrk >/dev/null || apt-get install -y wrk
	$(PIP) install --quiet -c constraints.txt 'litserve==0.2.19'
	$(PY) -m bench.serve_bench

# Mixed traffic at concurrency 64 for 5 minutes (MINUTES=...), and a decompression bomb.
MINUTES ?= 5
soak: install
	$(PY) -m bench.soak --minutes $(MINUTES)

# The Dockerfile's install steps and CMD, run without a Docker engine (see deploy/container_check.py).
container-check: install
	$(PY) -m deploy.container_check

# Accuracy of both digit models on realistic photos and scans made from MNIST test digits.
bench-digits: install
	$(PY) -m bench.realistic_digits

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
