# Every target runs inside .venv, which `make install` creates from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test reliability demo screenshots bench bench-publish lint format clean up down stack deploy-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml aggregator/_scan.c aggregator/_buckets.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(BIN)/pytest

# The long fault-injection and load runs (docs/reliability.md); `make test` runs their short variants.
reliability: install
	$(BIN)/pytest -m reliability -rA

demo: install
	$(BIN)/aggregator demo

# docs/img/explorer-*.png: the explorer page on the demo's data (needs /usr/bin/chromium: scripts/ensure-chromium.sh)
screenshots: install
	$(BIN)/aggregator demo --no-serve
	$(BIN)/python scripts/screenshots.py

bench: install
	$(BIN)/python bench/job.py --output docs/benchmarks.md
	$(BIN)/python bench/publish.py --output docs/benchmarks.md
	$(BIN)/python bench/api.py --output docs/benchmarks.md

bench-publish: install
	$(BIN)/python bench/publish.py --output docs/benchmarks.md

# The production topology (deploy/): compose needs a container engine; `make stack` runs the same processes
# locally against the Postgres on 127.0.0.1:5432 (scripts/ensure-postgres.sh starts one), until Ctrl-C.
COMPOSE ?= docker compose

up:
	$(COMPOSE) -f deploy/compose.yaml up --build --detach
	@echo "API on http://localhost:8000/, Dask dashboard on http://localhost:8787/status; stop with: make down"

down:
	$(COMPOSE) -f deploy/compose.yaml down --volumes --remove-orphans

# The Helm chart linted, rendered with each ci/*-values.yaml and every object validated, offline (scripts/check_chart.py).
deploy-check: install
	$(BIN)/python scripts/check_chart.py

stack: install
	scripts/ensure-postgres.sh
	$(BIN)/python deploy/stack.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .demo .pytest_cache dask-worker-space
