# usage-ping: every target creates the virtual environment and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench-payload test lint typecheck pytest services bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

services:
	@bash scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) services
	$(BIN)/pytest

test: lint typecheck pytest

# Benchmarks print tables of figures measured side by side; BENCH_ARGS passes flags through,
# e.g. `make bench BENCH_ARGS="--rows 1M"`.
bench: $(STAMP) services
	$(BIN)/python benchmarks/sql_counters.py $(BENCH_ARGS)

# The payload at 1M and 10M rows on PostgreSQL (generates its own database on first run).
bench-payload: $(STAMP) services
	$(BIN)/python benchmarks/payload.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
