# Every target creates .venv if it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core for the console's accessibility audit (tests/e2e/package.json), installed where npm
# exists; without npm the audit skips and says why.
NODE_DIR := build/node
AXE := $(NODE_DIR)/node_modules/axe-core/axe.min.js
NPM := $(shell command -v npm 2>/dev/null)

.PHONY: demo test lint bench bounds stress clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	mkdir -p $(NODE_DIR)
	cp tests/e2e/package.json tests/e2e/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && $(NPM) ci --ignore-scripts --no-audit --no-fund
	touch $@

demo: $(STAMP)
	$(BIN)/keyledger demo

test: $(STAMP) $(if $(NPM),$(AXE))
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# What the cases short of their targets could reach at best (bench/bounds.py).
bounds: $(STAMP)
	$(BIN)/python -m bench.bounds

# The reliability suite at the full sizes of issue 6 (KEYLEDGER_STRESS=1): concurrent
# writers, kill -9, follower restarts, model equivalence, hostile input, secrets at rest,
# tampering, store faults (the PostgreSQL server is stopped briefly) and authorization;
# ends with a table of what was tried and what held.
stress: $(STAMP)
	KEYLEDGER_STRESS=1 $(BIN)/python -m pytest tests/reliability -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf build/typecheck && mkdir -p build/typecheck/keyledger
	cp -rs $(CURDIR)/keyledger/. build/typecheck/keyledger/
	for part in domain projections adapters; do ln -s $(CURDIR)/$$part build/typecheck/keyledger/$$part; done
	MYPYPATH=build/typecheck $(BIN)/mypy -p keyledger

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache keyledger.db keyledger.db-wal keyledger.db-shm keyledger.db.lock
