# One home for the project's commands. `make setup` then `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint bench clean

setup:  ## virtual environment, the package with its pinned dependencies, and the ONNX model
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[build,dev]'
	$(BIN)/imgsearch build-model

test:  ## lint, type-check and the whole test suite
	$(BIN)/ruff check imgsearch tests scripts
	$(BIN)/mypy
	$(BIN)/pytest -q

bench:  ## retrieval quality and speed on ../shared/datasets (long: see docs/BENCHMARKS.md)
	$(BIN)/python scripts/bench.py --datasets ../shared/datasets --out bench-out

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .mypy_cache .ruff_cache
