# emotiw-book: install, generate the synthetic data, execute the notebooks, build the book, test.
# Needs GNU make and Python 3.11 (3.12 works too); everything else goes into $(VENV).
#   make book                 # demo profile -> _build/html/index.html
#   make book PROFILE=smoke   # the tiny profile (about 3 minutes on 2 CPU cores)
#   make run PROFILE=full DEVICE=cuda
#   make lab VARIANT=lstm     # JupyterLab on the chapters of a variant of runs/demo (prints the URL)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
PROFILE ?= demo
DEVICE ?=
VARIANT ?=
PYTEST_ARGS ?= -q

VPY := $(VENV)/bin/python
EMOTIW := $(VENV)/bin/emotiw
STAMP := $(VENV)/.installed

.PHONY: help install data run book lab test browser clean wheels
# Targets run in the order written (book = install, data, run, book) even under make -j.
.NOTPARALLEL:

help: ## show this help
	@echo "usage: make TARGET [PROFILE=smoke|demo|full] [DEVICE=auto|cpu|cuda] [PYTHON=python3.11]"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' || \
	  { echo "error: $(PYTHON) is not Python 3.11 or 3.12; run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 1; }
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -c constraints.txt -e ".[dev]"
# MTCNN weights for emotiw_utils.detect. --no-deps: facenet-pytorch 2.6.0 pins torch<2.3, torchvision, numpy<2
# and Pillow<10.3, which would replace ours (so `pip check` lists it); it works with them, and emotiw_utils.detect
# provides the two torchvision functions it uses, so torchvision is never installed.
	$(VPY) -m pip install --no-deps facenet-pytorch==2.6.0
# JupyterLab (`make lab`): the kernel spec of this venv, named after the project, and jupytext's viewer as the default
# for .md files (a settings override in the venv: emotiw_utils/lab.py); both stay inside $(VENV).
	$(VPY) -m emotiw_utils.lab --setup
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned package (instant when up to date)

data: install ## generate (or reuse) the synthetic dataset of PROFILE
	$(EMOTIW) data synth --profile $(PROFILE)

run: install ## execute every notebook of PROFILE with papermill (cached stages are skipped)
	$(EMOTIW) run --profile $(PROFILE) $(if $(DEVICE),--device $(DEVICE))

book: install data run ## install, generate data, run the notebooks and render the book to _build/html
	$(EMOTIW) book
	@echo "open _build/html/index.html"

lab: install ## JupyterLab on the chapters of PROFILE (VARIANT=NAME: a variant of runs/PROFILE), on 127.0.0.1 with a token
	$(EMOTIW) lab --profile $(PROFILE) $(if $(VARIANT),--variant $(VARIANT))

test: install ## run the test suite
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Debian's chromium for tests/test_book_browser.py (Playwright drives it; it downloads no browser of its own).
browser: ## install Debian's chromium (apt-get, as root) for the browser test of the book
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "error: run 'sudo make browser' (or: sudo apt-get install chromium)" >&2; exit 1; fi

# Wheels for bench/gpu_suite.sh on a GPU machine that reaches no registry (Linux x86_64, CPython 3.12 unless
# WHEELS_PY=3.11): bench/gpu_wheels.txt into .wheels/ (git-ignored); prints the size that travels (<= 64 MiB).
wheels: ## download the wheels the GPU suite installs (bench/gpu_suite.sh) into .wheels/
	PYTHON=$(PYTHON) bash bench/fetch_wheels.sh

clean: ## remove the rendered book, executed notebooks and run artifacts (keeps .venv and data/)
	rm -rf _build book/executed runs
