# `make demo` and `make test` each build their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The newest versions pip resolves from setup.cfg's ranges alone (no constraints.txt).
LATEST_VENV ?= .venv-latest
LATEST_STAMP := $(LATEST_VENV)/.installed
# Every extra, so that the whole suite runs (a missing extra skips its tests).
EXTRAS := [task1,test,ray,tensorboard,mlflow,report]
VERSIONS := -c "from fuxictr_mmctr import compat; print('versions:', compat.versions_line())"

.PHONY: pipeline demo test test-fast test-latest test-latest-fast test-oldest test-fuxictr-latest bench clean

# The tested set: constraints.txt pins every version.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	# [ray]: the Ray sweep tests start a local Ray cluster; [tensorboard,mlflow,report]: the
	# tracking tests read runs back with the libraries' own readers, the report tests draw
	$(BIN)/pip install -q -c constraints.txt -e '.$(EXTRAS)'
	touch $(STAMP)

# The newest set: what a plain `pip install -e .` resolves today (torch still pinned first).
# Delete .venv-latest to resolve again; the resolved versions land in .venv-latest/resolved.txt.
$(LATEST_STAMP): setup.cfg pyproject.toml
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip
	$(LATEST_VENV)/bin/pip install -q torch==2.13.0
	$(LATEST_VENV)/bin/pip install -q -e '.$(EXTRAS)'
	$(LATEST_VENV)/bin/pip freeze --exclude-editable > $(LATEST_VENV)/resolved.txt
	touch $(LATEST_STAMP)

# The floors of setup.cfg's ranges (constraints-oldest.txt); not part of CI, run by hand.
OLDEST_VENV ?= .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed
$(OLDEST_STAMP): setup.cfg constraints-oldest.txt pyproject.toml
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/pip install -q torch==2.13.0
	$(OLDEST_VENV)/bin/pip install -q -c constraints-oldest.txt -e '.$(EXTRAS)'
	touch $(OLDEST_STAMP)

## The main job on the sample: Task 1's item sides -> two models on each of three (3 epochs, the official
## budget) -> a blend -> a checked submission (runs/pipeline/submission.zip; rerun resumes)
pipeline: $(STAMP)
	$(BIN)/mmctr make-sample --out data/sample --preset default
	$(BIN)/mmctr pipeline --data-dir data/sample --work-dir runs/pipeline --tiny-clip --epochs 3 --jobs 2

## A quick look on the sample: make it, train DIN (1 epoch, ~2 min), write submission/DIN_demo.zip
demo: $(STAMP)
	$(BIN)/mmctr demo

# The unit tests run in two pytest-xdist workers (one per core: they only compute, no test
# spawns a process); the end-to-end tests, which train and time processes, one at a time.
UNIT := -m "not slow" -n 2
E2E := -m slow

## The test suite: unit tests then end-to-end tests (about 7 minutes on 2 quiet CPU cores)
test: $(STAMP)
	$(BIN)/python $(VERSIONS)
	$(BIN)/python -m pytest -q $(UNIT)
	$(BIN)/python -m pytest -q $(E2E)

## The unit tests only (no training, no subprocess; two workers)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(UNIT)

## The whole suite in the newest set of versions setup.cfg allows (FuxiCTR 2.3.10, pandas 3, ...)
test-latest: $(LATEST_STAMP)
	$(LATEST_VENV)/bin/python $(VERSIONS)
	$(LATEST_VENV)/bin/python -m pytest -q $(UNIT)
	$(LATEST_VENV)/bin/python -m pytest -q $(E2E)

## The unit tests in the newest set
test-latest-fast: $(LATEST_STAMP)
	$(LATEST_VENV)/bin/python $(VERSIONS)
	$(LATEST_VENV)/bin/python -m pytest -q $(UNIT)

## The whole suite at the floors of setup.cfg's ranges (FuxiCTR 2.3.7, NumPy 1.26, pandas 2.0, ...)
test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python $(VERSIONS)
	$(OLDEST_VENV)/bin/python -m pytest -q $(UNIT)
	$(OLDEST_VENV)/bin/python -m pytest -q $(E2E)

# the former name of test-latest (the newest set includes the newest FuxiCTR 2.3.x)
test-fuxictr-latest: test-latest

## Benchmarks (print their figures side by side with the reference)
bench: $(STAMP)
	$(BIN)/python bench/loader.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(OLDEST_VENV) checkpoints submission data/sample
