# Every target runs inside .venv, which `make install` creates from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test demo bench bench-publish lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(BIN)/pytest

demo: install
	$(BIN)/aggregator demo

bench: install
	$(BIN)/python bench/job.py --output docs/benchmarks.md
	$(BIN)/python bench/publish.py --output docs/benchmarks.md
	$(BIN)/python bench/api.py --output docs/benchmarks.md

bench-publish: install
	$(BIN)/python bench/publish.py --output docs/benchmarks.md

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .demo .pytest_cache dask-worker-space
