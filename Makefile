# gochat-actors. The two commands: `make demo` and `make test` (see README.md).
# Both create .venv with `python3 -m venv` when it is missing and install into it;
# an install is redone only when pyproject.toml changes (stamp files in .venv).
# `make test` then runs pytest a second time on Python $(ALSO_PYTHON) (3.13), in its own venv,
# with the asyncio bridge's tuning off (ALSO_TUNING).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
export NO_MKDOCS_2_WARNING := 1

.DEFAULT_GOAL := help
.PHONY: help demo test install install-dev services-up services-down services-status \
	lint typecheck docs pytest pytest-also mutants clean

# A second interpreter for `make test`'s pytest pass (`ALSO_PYTHON=` for none), run after
# the first, not beside it: side by side, two passes' private servers can race for one
# free port and their real-time tests share two cores (measured: docs/testing.md).
# Found on PATH or under ~/.pyenv/versions (pyenv's shims are skipped when they cannot
# run it); when CI is set, a missing one is a failure, otherwise that pass is skipped.
ALSO_PYTHON ?= 3.13
# The second pass runs the asyncio bridge untuned (trio-asyncio's loop as it is): the
# tuning must be safe to lose, costing speed, never correctness (docs/design.md).
# Python 3.14 needs the tuning: give ALSO_TUNING=on with ALSO_PYTHON=3.14.
ALSO_TUNING ?= off
ALSO_VENV := .venv$(subst .,,$(ALSO_PYTHON))
ALSO_BIN := $(ALSO_VENV)/bin

help:
	@echo "make demo             create .venv, install, run 'gochat-actors demo'"
	@echo "make test             create .venv, install .[dev], start the servers, run"
	@echo "                      ruff, mypy --strict, lint-imports, mkdocs build --strict"
	@echo "                      and pytest, then pytest again on Python 3.13 in .venv313"
	@echo "                      (ALSO_PYTHON=3.12 for another one, ALSO_PYTHON= for none)"
	@echo "make services-up      start MariaDB, Redis, etcd and Tansu (Kafka) on 127.0.0.1"
	@echo "make services-down    stop the servers that services-up started"
	@echo "make services-status  show each server"
	@echo "make lint | typecheck | docs | pytest | pytest-also   one step of 'make test'"
	@echo "make mutants [MODULE=supervisors/_supervisor.py]   mutation testing (mutmut) of one"
	@echo "                      safety-critical module, or all in turn; not part of 'make test'"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[mysql,kafka]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

DEMO_ARGS ?=
demo: install
	$(BIN)/gochat-actors demo --duration 30 --chaos 1 $(DEMO_ARGS)

test: install-dev
	scripts/services up
	$(BIN)/ruff check .
	bash -n scripts/services .ci/run
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/pytest
	$(MAKE) --no-print-directory pytest-also

services-up: install-dev
	scripts/services up

services-down:
	scripts/services down

services-status:
	scripts/services status

lint: install-dev
	$(BIN)/ruff check .
	bash -n scripts/services .ci/run

typecheck: install-dev
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: install-dev
	$(BIN)/mkdocs build --strict --quiet

pytest: install-dev services-up
	$(BIN)/pytest

# Mutation testing: slow (minutes to an hour a module), so never part of `make test`.
# MODULE empty = every module of scripts/mutants.py, in order. Results: docs/testing.md.
MODULE ?=
mutants: install-dev
	$(BIN)/python scripts/mutants.py $(MODULE)
ifneq ($(ALSO_PYTHON),)
# The first python$(ALSO_PYTHON) that runs: on PATH, then the newest under ~/.pyenv/versions.
find_also_python = for p in $$(command -v python$(ALSO_PYTHON)) \
	$$(ls -d $$HOME/.pyenv/versions/$(ALSO_PYTHON).*/bin/python$(ALSO_PYTHON) 2>/dev/null | sort -rV); do \
	"$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done

$(ALSO_BIN)/python:
	@p=$$($(find_also_python)); \
	if [ -z "$$p" ]; then echo "no python$(ALSO_PYTHON) on PATH nor under ~/.pyenv/versions" >&2; exit 1; fi; \
	echo "$$p -m venv $(ALSO_VENV)"; "$$p" -m venv $(ALSO_VENV)

$(ALSO_VENV)/.installed-dev: pyproject.toml | $(ALSO_BIN)/python
	$(ALSO_BIN)/python -m pip --disable-pip-version-check install --quiet -e '.[dev]'
	@touch $@
endif

# pytest (only: lint, types and docs do not depend on the interpreter) on the second
# Python; skipped when there is none, or when .venv already is that version.
pytest-also:
	@if [ -z "$(ALSO_PYTHON)" ]; then exit 0; fi; \
	if $(BIN)/python -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != "$(ALSO_PYTHON)")'; then \
		echo "pytest-also: .venv is already Python $(ALSO_PYTHON)"; exit 0; fi; \
	if [ ! -x $(ALSO_BIN)/python ] && [ -z "$$($(find_also_python))" ]; then \
		if [ -n "$${CI:-}" ]; then echo "pytest-also: no python$(ALSO_PYTHON) (CI is set: a failure)" >&2; exit 1; fi; \
		echo "pytest-also: no python$(ALSO_PYTHON) on PATH nor under ~/.pyenv/versions: skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory services-up $(ALSO_VENV)/.installed-dev && \
		GOCHAT_BRIDGE_TUNING=$(ALSO_TUNING) $(ALSO_BIN)/pytest

clean:
	rm -rf site .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
