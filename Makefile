# `make demo` and `make test` each build their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[task1,test]'
	touch $(STAMP)

## The main job on the bundled sample: make it, train DIN, write submission/DIN_sample.zip
demo: $(STAMP)
	$(BIN)/mmctr demo

## The test suite (a few minutes on 2 CPU cores)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Benchmarks (print their figures side by side with the reference)
bench: $(STAMP)
	$(BIN)/python bench/loader.py

clean:
	rm -rf $(VENV) checkpoints submission data/sample
