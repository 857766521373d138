# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= medianalysed.toml

.PHONY: run test lint typecheck unit venv bench binary e2e-binary clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	mkdir -p var/inbox var/outbox var/archive var/state
	$(BIN)/medianalysed run --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check daemon tests benchmarks
	$(BIN)/ruff format --check daemon tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: lint typecheck
	$(BIN)/pytest -q

# The single self-contained executable: dist/medianalysed (PyInstaller, one file).
binary:
	PYTHON=$(PYTHON) packaging/build.sh

# Benchmarks: real photos from Debian wallpaper packages, timed against a naive baseline,
# imagededup and the decode floor. Uses its own .bench-venv (torch stays out of .venv).
bench:
	bash benchmarks/bench.sh

clean:
	rm -rf $(VENV) .build-venv build dist .mypy_cache .ruff_cache .pytest_cache
