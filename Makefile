# imagegen: the project's vocabulary. Every target sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PYTHONPATH := functions:infra
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup demo local test test-fast chaos synth lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create .venv with everything the project needs

demo: setup  ## run the service locally, send the seed's request, save the images into ./out
	$(BIN)/python -m imagegen_local.demo

local: setup  ## run the service locally in the foreground (Ctrl-C stops it)
	$(BIN)/python -m imagegen_local

test: setup  ## every test: unit, integration, workflow, end to end, infrastructure
	$(BIN)/python -m pytest

test-fast: setup  ## everything but the CDK synthesis checks
	$(BIN)/python -m pytest -m "not infra"

chaos: setup  ## chaos and load run on the local stack: 500 jobs under ~20 % faults + 1,000 submits; prints a table (minutes; CHAOS_ARGS="--jobs 200")
	$(BIN)/python -m imagegen_local.chaos $(CHAOS_ARGS)

synth: setup  ## synthesize the CloudFormation template into cdk.out/ (offline, no AWS account)
	$(BIN)/python infra/app.py

lint: setup
	$(BIN)/ruff check functions infra tests
	$(BIN)/ruff format --check functions infra tests
	$(BIN)/mypy functions infra tests/fakes.py

format: setup
	$(BIN)/ruff format functions infra tests

clean:
	rm -rf $(VENV) build cdk.out out local-stack.json .pytest_cache
