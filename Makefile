# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= medianalysed.toml

.PHONY: deps run test lint typecheck unit venv bench binary e2e-binary clean

# Debian packages the tests and the binary build use: systemd-analyze (unit file checks),
# objcopy (PyInstaller). Installed only when missing, and only where we may (root).
DEBIAN_PACKAGES := systemd binutils
deps:
	@missing=""; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v objcopy >/dev/null || missing="$$missing binutils"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages:$$missing (sudo apt-get install$$missing)"; \
		fi; \
	fi

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

test: deps lint typecheck
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
