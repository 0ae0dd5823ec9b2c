# One entry point for people and CI. `make run` and `make test` set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The dashboard's charting library: from the npm registry (package-lock.json), copied
# where the page is served from; never committed (see .gitignore).
VENDOR := src/digitalme/monitoring/dashboard/static/vendor
VENDOR_STAMP := $(VENDOR)/.installed

.PHONY: run test lint format bench clean vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,otlp,azure]'
	touch $@

$(VENDOR_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p $(VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	cp node_modules/uplot/LICENSE $(VENDOR)/uPlot.LICENSE
	touch $@

vendor: $(VENDOR_STAMP)

run: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/digitalme serve

test: $(TEST_STAMP) $(VENDOR_STAMP)
	$(BIN)/pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy src

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix src tests benchmarks docs
	$(BIN)/ruff format src tests benchmarks docs

bench: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[test,otlp,azure,bench]'
	$(BIN)/python benchmarks/bench_hot_path.py
	$(BIN)/python benchmarks/bench_request_overhead.py
	$(BIN)/python benchmarks/bench_pipeline_throughput.py --seconds 300
	$(BIN)/python benchmarks/bench_health.py
	$(BIN)/python benchmarks/bench_alert_engine.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache node_modules $(VENDOR)
