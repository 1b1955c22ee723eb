# The two commands a new user needs are `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck pytest bench bench-enrichment chaos fuzz soak clean

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

## Faults under load (API/worker SIGKILL, PostgreSQL paused and stopped, Redis lost, poison
## record, bad-request flood); see docs/reliability.md. QUICK=1 for a short run.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(if $(QUICK),--quick)

## Schemathesis against /openapi.json of the running app: no 5xx, nothing undocumented.
fuzz: $(STAMP)
	$(BIN)/python -m bench.fuzz $(if $(QUICK),--quick)

## 10 minutes at half the measured peak rate: no errors, flat memory and connections.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
