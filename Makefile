# countersign: `make test` sets up .venv on first use, then runs lint, types, import
# contracts and the whole test suite (SQLite always, PostgreSQL when reachable).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: test lint check-imports typecheck unit install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check-imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q

test: lint typecheck check-imports unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
