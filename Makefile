# logtail: the same targets for people and CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint system-deps bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make run: set up, then serve the shipped config.toml with a demo log being written.
run: install
	mkdir -p logs
	$(BIN)/logtail demo logs/demo.log & DEMO=$$!; \
	trap 'kill $$DEMO 2>/dev/null' EXIT INT TERM; \
	$(BIN)/logtail serve -c config.toml

## make test: set up (Python packages, and the Debian packages the tests start), lint, run every test.
test: install system-deps lint
	$(BIN)/python tests/fetch_axe.py
	$(BIN)/pytest

## make lint: ruff everywhere, and mypy --strict on logtail/ (configured in pyproject.toml).
lint: install
	$(BIN)/ruff check logtail tests bench
	$(BIN)/mypy

system-deps:
	@sh tests/system-deps.sh

## make bench: run the benchmarks and write bench/RESULTS.md.
bench: install system-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) logs bench/out
