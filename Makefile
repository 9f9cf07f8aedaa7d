# The commands of the README. Each target installs what it needs into .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: up test test-quick check stubs install

$(BIN)/evorec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[model,dev]'
	touch $@

install: $(BIN)/evorec

# The cross-language client test needs Node.js; without it that one test skips.
tests/node/node_modules/.package-lock.json: tests/node/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --silent; fi

## Run all four services on embedded defaults (Ctrl-C stops them).
up: install
	$(BIN)/evorec up

## Run the whole test suite, the slow tests too (what CI runs).
test: install tests/node/node_modules/.package-lock.json
	$(BIN)/pytest -q -m "slow or not slow"

## Run the quick tests only (those not marked slow), for the edit-test loop.
test-quick: install tests/node/node_modules/.package-lock.json
	$(BIN)/pytest -q

## Contract lint and compatibility, fresh stubs, lint, format, types.
check: install
	bash .ci/checks

## Regenerate the Python stubs from protos/.
stubs: install
	$(BIN)/python scripts/generate_stubs.py
