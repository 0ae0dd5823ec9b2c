# One entry point for people and CI. `make run` and `make test` set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,otlp,azure]'
	touch $@

run: $(STAMP)
	$(BIN)/digitalme serve

test: $(TEST_STAMP)
	$(BIN)/pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[test,otlp,azure,bench]'
	$(BIN)/python benchmarks/bench_hot_path.py
	$(BIN)/python benchmarks/bench_request_overhead.py
	$(BIN)/python benchmarks/bench_pipeline_throughput.py --seconds 300
	$(BIN)/python benchmarks/bench_health.py
	$(BIN)/python benchmarks/bench_alert_engine.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
