# imagegen: the project's vocabulary. Every target sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The AWS CDK CLI, pinned by locks/cdk-cli and linked into the venv, so that after
# `source .venv/bin/activate` both `python` (cdk.json's app) and `cdk` are the project's.
CDK_CLI := build/cdk-cli/node_modules/.bin/cdk
export PYTHONPATH := functions:infra
# On Node 20, jsii (the bridge under the CDK app) prints an end-of-life banner on every synth:
# this variable, set to the Node major version, is what silences it (docs/deploy.md says so too).
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup demo local test test-fast chaos bench synth lint format clean lock diagrams

# Exactly the pinned, hash-checked versions of locks/dev.txt, then the project itself (editable,
# nothing more): two setups a month apart get the same packages.
$(VENV)/.installed: pyproject.toml locks/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r locks/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(CDK_CLI): locks/cdk-cli/package.json locks/cdk-cli/package-lock.json
	mkdir -p build/cdk-cli
	cp locks/cdk-cli/package.json locks/cdk-cli/package-lock.json build/cdk-cli/
	npm ci --prefix build/cdk-cli --no-audit --no-fund --loglevel=error
	touch $@

$(BIN)/cdk: $(CDK_CLI) | $(VENV)/.installed
	ln -sf ../../$(CDK_CLI) $@

setup: $(VENV)/.installed $(BIN)/cdk  ## create .venv with everything the project needs (the CDK CLI too)

# After a change to pyproject.toml's dependencies; UPGRADE=1 takes the newest versions allowed.
# The CDK CLI's version is the one in locks/cdk-cli/package.json.
lock: $(VENV)/.installed  ## re-pin locks/: the dev environment, the Lambda layer, the CDK CLI
	$(BIN)/python -m imagegen_infra.locks --uv $(BIN)/uv $(if $(UPGRADE),--upgrade)
	npm install --prefix locks/cdk-cli --package-lock-only --no-audit --no-fund --loglevel=error

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

bench: setup  ## benchmark on the local stack: naive vs default schedule, lag, counts, cost, quotas, imports, finalize; prints a table, writes bench/results.json (minutes; BENCH_ARGS="--jobs 30 --pairs 3")
	$(BIN)/python -m imagegen_local.bench $(BENCH_ARGS)

synth: setup  ## synthesize the CloudFormation template into cdk.out/ (offline, no AWS account)
	$(BIN)/python infra/app.py

diagrams: setup  ## regenerate docs/architecture.md's diagrams from the synthesized template
	$(BIN)/python -m imagegen_infra.diagrams

lint: setup
	$(BIN)/ruff check functions infra tests
	$(BIN)/ruff format --check functions infra tests
	$(BIN)/mypy functions infra tests/fakes.py

format: setup
	$(BIN)/ruff format functions infra tests

clean:
	rm -rf $(VENV) build cdk.out out local-stack.json .pytest_cache
