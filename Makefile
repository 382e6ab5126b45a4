# The two set-up commands of the README: `make demo` (whole pipeline on the shared demo model) and
# `make test`. Both create the virtual environment first; torch is pinned to the CPU build in pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared

$(BIN)/attr-compress: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

.PHONY: install demo test lint
install: $(BIN)/attr-compress

demo: install
	GLUE_DIR=$(SHARED)/data/glue $(BIN)/attr-compress $(SHARED)/models/minilm-l6-sst2 --target-speedup 2.5 --compare --out demo-out --force

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
