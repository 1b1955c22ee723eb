# The two commands a new user needs are `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck pytest bench bench-quick bench-enrichment chaos fuzz soak clean

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

# Parallel test processes (pytest-xdist), each with its own PostgreSQL and Redis; more than
# the cores, as most tests wait on servers and processes. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 4
pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

## Every benchmark of issue 9 and one table of its targets (see bench/README.md); takes half an
## hour or more. Results go to bench/results/. Exits non-zero only when a ledger does not balance.
BENCH_EVENTS ?= 10000
BENCH_ROUNDS ?= 3
BENCH_SLOW_ROUNDS ?= 1
BENCH_PREFILL ?= 1000000
BENCH_RSS_EVENTS ?= 100000
BENCH_KILL_AFTER ?= 3
BENCH_ENRICH_EVENTS ?= 600
BENCH_ENRICH_STORM ?= 500
BENCH_ENRICH_REPEATS ?= 3
BENCH_PIPELINE_SECONDS ?= 15
BENCH_PIPELINE_BACKLOG ?= 4000
BENCH_PIPELINE_REPEATS ?= 2
BENCH_RESULTS ?= bench/results
bench: $(STAMP)
	$(BIN)/python -m bench.suite --events $(BENCH_EVENTS) --rounds $(BENCH_ROUNDS) \
		--slow-rounds $(BENCH_SLOW_ROUNDS) --prefill $(BENCH_PREFILL) \
		--rss-events $(BENCH_RSS_EVENTS) --kill-after $(BENCH_KILL_AFTER) --enrich-events $(BENCH_ENRICH_EVENTS) \
		--enrich-storm $(BENCH_ENRICH_STORM) --enrich-repeats $(BENCH_ENRICH_REPEATS) \
		--pipeline-seconds $(BENCH_PIPELINE_SECONDS) --pipeline-backlog $(BENCH_PIPELINE_BACKLOG) \
		--pipeline-repeats $(BENCH_PIPELINE_REPEATS) --results $(BENCH_RESULTS)

## A smoke run of the same set in a few minutes: small counts, figures not comparable.
bench-quick: $(STAMP)
	$(BIN)/python -m bench.suite --events 500 --warmup 100 --rounds 1 --slow-rounds 1 \
		--prefill 20000 --rss-events 2000 --kill-after 2 --enrich-events 60 --enrich-storm 50 \
		--enrich-repeats 1 --pipeline-seconds 3 --pipeline-backlog 300 --pipeline-repeats 1 \
		--results bench/results/quick

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

## 10 minutes at half the measured delivered peak: no errors, flat memory and connections.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
