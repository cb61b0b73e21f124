# nbmodels — developer commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup lint test demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy

## Every test: lint, types, and the whole pytest suite (real servers on 127.0.0.1 only; the
## widget's browser tests use Debian's Chromium, installed here when missing).
test: lint
	scripts/ensure-test-tools
	$(BIN)/pytest

## The main job on the embedded default: a local Hub emulator with demo models, then a download.
demo: setup
	$(BIN)/python -m nbmodels.testing.demo

## Side-by-side download benchmark (root: apt, network namespaces). See benchmarks/README.md.
bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/responsiveness.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .demo
