# Layerwise. `make run` starts the service on its embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint typecheck bench docs ui clean

# Reinstall when the dependencies change. torch is pinned in pyproject.toml: the CPU build of
# that version lies on this kind of machine's disk, any other pulls several GB of CUDA wheels.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/layerwise serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check api services workers models tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m bench

# The reference pages in docs/ written from the code; tests/docs fails when one is stale.
docs: install
	$(BIN)/python -m api.reference docs

ui: install
	$(BIN)/layerwise ui

clean:
	rm -rf .layerwise .pytest_cache
