# The two commands a new user needs are `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck pytest bench bench-enrichment clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run API + worker (embedded PostgreSQL and Redis unless HIREHOOK_*_URL are set).
dev: $(STAMP)
	$(BIN)/hirehook dev

## Lint, type-check and run the whole test suite against real PostgreSQL and Redis.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.intake

## Enrichment throughput (1 and 2 worker processes) and API calls per event; see bench/README.md.
bench-enrichment: $(STAMP)
	$(BIN)/python -m bench.enrichment

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
