# Every target creates .venv if it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench stress clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/keyledger demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf build/typecheck && mkdir -p build/typecheck/keyledger
	cp -rs $(CURDIR)/keyledger/. build/typecheck/keyledger/
	for part in domain projections adapters; do ln -s $(CURDIR)/$$part build/typecheck/keyledger/$$part; done
	MYPYPATH=build/typecheck $(BIN)/mypy -p keyledger

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache keyledger.db keyledger.db-wal keyledger.db-shm
