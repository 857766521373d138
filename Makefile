# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= medianalysed.toml

.PHONY: deps run test lint typecheck unit venv bench bench-near binary deb lintian-deb e2e-binary clean config-docs

# Debian packages the tests and the binary build use: systemd-analyze (unit file checks),
# objcopy and strip (PyInstaller, the build's libraries), patchelf (their RUNPATH), promtool
# (metrics lint, alert rules), groff (the man page check), chromium (report.html is loaded in
# a real headless browser). Installed only when missing, and only where we may (root).
deps:
	@missing=""; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v objcopy >/dev/null || missing="$$missing binutils"; \
	command -v patchelf >/dev/null || missing="$$missing patchelf"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v groff >/dev/null || missing="$$missing groff-base"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $$missing; \
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

# medianalysed.toml and the README's key table, from the key declarations (configschema.py).
config-docs: $(STAMP)
	$(BIN)/python -m medianalysed.configdocs $(CURDIR)

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# The whole suite from source, then end-to-end tests again against the one-directory build,
# then the Debian package installed for real (tests/package, as root). Against the build, what
# differs from source is what these cover: the bootloader, signals to the process group,
# READY/STATUS on the notify socket, worker processes forked and killed, the bundled codecs
# (every decoder: the essential corpus), HTTP out, capabilities and names, CLI exit codes. The
# rest (settling, links, cache hits, vanishing folders) is the same Python in both: run once,
# from source (`make e2e-binary` runs every e2e test against the build).
BINARY_E2E := tests/e2e/test_daemon.py::test_folder_renamed_into_inbox_is_analysed_once_and_archived \
	tests/e2e/test_daemon.py::test_sigkill_mid_batch_then_restart_gives_exactly_once_results \
	tests/e2e/test_essential_corpus.py tests/e2e/test_kill_switch.py \
	tests/e2e/test_hostile_inputs.py tests/e2e/test_hostile_names.py \
	tests/e2e/test_operations.py::test_sigterm_mid_batch_drains_exits_0_and_the_restart_finishes_exactly_once \
	tests/e2e/test_operations.py::test_sighup_reloads_a_new_inbox_refuses_a_bad_config_and_sigusr1_dumps_stacks \
	tests/e2e/test_operations.py::test_ready_only_once_watching_then_live_status_and_watchdog_pings \
	tests/e2e/test_operations.py::test_cli_exit_codes

test: deps lint typecheck
	$(BIN)/pytest -q
	$(MAKE) binary
	MEDIANALYSED_BIN=$(BINARY) $(BIN)/pytest -q -m e2e $(BINARY_E2E)
	$(MAKE) deb
	MEDIANALYSED_DEB=$(DEB) $(BIN)/pytest -q tests/package

e2e-binary: deps binary
	MEDIANALYSED_BIN=$(BINARY) $(BIN)/pytest -q -m e2e tests/e2e

# The one-directory build dist/medianalysed/ (PyInstaller; nothing unpacked at start) and
# dist/medianalysed-<version>-<arch>.tar.gz, the one thing to copy.
BINARY := $(CURDIR)/dist/medianalysed/medianalysed
binary: $(STAMP)
	PYTHON=$(PYTHON) packaging/build.sh

# dist/medianalysed_<version>_<arch>.deb from that build (dpkg-deb); `make binary` first.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' daemon/medianalysed/__init__.py)
DEB := $(CURDIR)/dist/medianalysed_$(VERSION)_$(shell dpkg --print-architecture 2>/dev/null).deb
deb:
	@test -x $(BINARY) || $(MAKE) binary
	packaging/build-deb.sh

# Lintian on the package (a few minutes; not part of make test): no error expected.
lintian-deb: deb
	lintian --fail-on error $(DEB)

# Benchmarks: real photos from Debian wallpaper packages, timed against a naive baseline,
# imagededup and the decode floor. Uses its own .bench-venv (torch stays out of .venv).
bench:
	bash benchmarks/bench.sh

# Near-duplicate recall per planted variant and false matches (benchmarks/bench_near.py) alone.
bench-near:
	bash benchmarks/bench.sh near

clean:
	rm -rf $(VENV) .build-venv build dist .mypy_cache .ruff_cache .pytest_cache
