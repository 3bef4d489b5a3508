# meldctl: `make demo` (first run, offline) and `make test` (the test suite) work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,minilm,sagemaker,asr

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

# The demo: the embedded sample, offline (bundled MiniLM text encoder, no video weights), a few minutes on a CPU.
DEMO ?= demo
DEMO_CLIP := $(DEMO)/data/clips/test/dia3_utt5.mp4
demo: install
	@echo "== 1/4 prepare the embedded sample =="
	HF_HUB_OFFLINE=1 $(BIN)/meldctl prepare --source sample --data-dir $(DEMO)/data
	@echo "== 2/4 train (text + audio + video) on CPU =="
	rm -rf $(DEMO)/run
	HF_HUB_OFFLINE=1 $(BIN)/meldctl train --data-dir $(DEMO)/data --run-dir $(DEMO)/run --text-model minilm \
		--video-weights none --epochs 20 --batch-size 8 --device cpu
	@echo "== 3/4 evaluate best.pt on the sample's test split =="
	HF_HUB_OFFLINE=1 $(BIN)/meldctl eval $(DEMO)/run/best.pt --data-dir $(DEMO)/data --split test --device cpu
	@echo "== 4/4 predict one clip =="
	HF_HUB_OFFLINE=1 $(BIN)/meldctl predict $(DEMO_CLIP) --text "Ugh, can you believe that guy!" \
		--ckpt $(DEMO)/run/best.pt --device cpu

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
