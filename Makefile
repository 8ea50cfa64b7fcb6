# gochat-actors. The two commands: `make demo` and `make test` (see README.md).
# Both create .venv with `python3 -m venv` when it is missing and install into it;
# an install is redone only when pyproject.toml changes (stamp files in .venv).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
export NO_MKDOCS_2_WARNING := 1

.DEFAULT_GOAL := help
.PHONY: help demo test install install-dev services-up services-down services-status \
	lint typecheck docs pytest mutants clean

help:
	@echo "make demo             create .venv, install, run 'gochat-actors demo'"
	@echo "make test             create .venv, install .[dev], start the servers, run"
	@echo "                      ruff, mypy --strict, lint-imports, mkdocs build --strict"
	@echo "                      and pytest"
	@echo "make services-up      start MariaDB, Redis, etcd and Tansu (Kafka) on 127.0.0.1"
	@echo "make services-down    stop the servers that services-up started"
	@echo "make services-status  show each server"
	@echo "make lint | typecheck | docs | pytest   one step of 'make test'"
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

clean:
	rm -rf site .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
