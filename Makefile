# `make demo` and `make test` each build their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench test-fuxictr-latest clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	# [ray]: the Ray sweep tests start a local Ray cluster
	$(BIN)/pip install -q -c constraints.txt -e '.[task1,test,ray]'
	touch $(STAMP)

## The main job on the bundled sample: make it, train DIN, write submission/DIN_sample.zip
demo: $(STAMP)
	$(BIN)/mmctr demo

## The test suite: unit tests then end-to-end tests (a few minutes on 2 CPU cores)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The unit tests only (no training, no subprocess; well under a minute)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## Benchmarks (print their figures side by side with the reference)
bench: $(STAMP)
	$(BIN)/python bench/loader.py

## The suite against the newest FuxiCTR 2.3.x (needs ray[data]; its own environment)
LATEST_VENV := .venv-fuxictr-latest
test-fuxictr-latest:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q torch==2.13.0
	grep -v '^fuxictr==' constraints.txt > $(LATEST_VENV)/constraints.txt
	$(LATEST_VENV)/bin/pip install -q -c $(LATEST_VENV)/constraints.txt 'fuxictr==2.3.10' -e '.[task1,test]'
	$(LATEST_VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(LATEST_VENV) checkpoints submission data/sample
