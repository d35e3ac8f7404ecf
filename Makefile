# usage-ping: every target creates the virtual environment and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo bench-payload bench-collector test lint typecheck pytest services bench js clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

services:
	@bash scripts/ensure-services.sh

# The browser tracking module: the official Snowplow browser tracker and our module, bundled by
# esbuild from npm into the Python package (built here, never committed).
JS_BUNDLE := src/usage_ping/tracking/static/usage-ping-tracking.js
$(JS_BUNDLE): frontend/package.json frontend/package-lock.json $(wildcard frontend/src/*.js)
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm run --silent build

js: $(JS_BUNDLE)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) services $(JS_BUNDLE)
	$(BIN)/pytest

test: lint typecheck pytest

# Benchmarks print tables of figures measured side by side; BENCH_ARGS passes flags through,
# e.g. `make bench BENCH_ARGS="--rows 1M"`.
bench: $(STAMP) services
	$(BIN)/python benchmarks/sql_counters.py $(BENCH_ARGS)

# The payload at 1M and 10M rows on PostgreSQL (generates its own database on first run).
bench-payload: $(STAMP) services
	$(BIN)/python benchmarks/payload.py $(BENCH_ARGS)

# The main job on embedded defaults (SQLite, the SQLite counter store, the central service in
# this process): seed, track, build, send, print the score, then serve until Ctrl-C.
# DEMO_ARGS passes options through, e.g. DEMO_ARGS="--scale 10" or "--no-serve".
demo: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory js; \
	else echo "npm not found: the demo's pages run without the browser tracking module"; fi
	$(BIN)/usage-ping demo $(DEMO_ARGS)

# Ingest and dashboard times of the central service on PostgreSQL (and ingest on SQLite).
bench-collector: $(STAMP) services
	$(BIN)/python benchmarks/collector.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis frontend/node_modules $(JS_BUNDLE)
