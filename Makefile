# countersign: `make test` sets up .venv on first use, then runs lint, types, import
# contracts and the whole test suite (SQLite always, PostgreSQL when reachable).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: test lint check-imports typecheck deadcode unit install lock clean demo screenshots proof

# Every dependency comes from requirements.lock, pinned with hashes; `make lock` refreshes it.
# Each step says what it does, and pip names each package as it goes: a first run never looks stuck.
$(STAMP): pyproject.toml clients/python/pyproject.toml requirements.lock
	@echo "countersign: [1/4] the virtualenv $(VENV) (first run, or after the lock changed)"
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "countersign: [2/4] the locked dependencies (requirements.lock), one line per package"
	$(BIN)/pip install --require-hashes --no-deps --progress-bar off -r requirements.lock
	@echo "countersign: [3/4] countersign itself and its Python client, editable"
	$(BIN)/pip install --quiet --no-deps -e . -e clients/python  # and the client distribution; its one dependency is in the lock
	@echo "countersign: [4/4] checking that the dependencies fit together"
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

# Re-resolve requirements.lock from pyproject.toml at the newest allowed versions (needs PyPI),
# for every platform; then `make test` installs and tests exactly that.
lock:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes --upgrade \
		--quiet -o requirements.lock

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check-imports: $(STAMP)
	$(BIN)/lint-imports

# Code nothing uses (vulture; paths and framework names in pyproject's [tool.vulture]); what is
# kept on purpose is listed with a reason in vulture_whitelist.py. Keep it at zero.
deadcode: $(STAMP)
	$(BIN)/python -m vulture

unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q

test: lint typecheck check-imports deadcode unit

# The whole product offline: a Slack-like page at http://127.0.0.1:8000 (Ctrl-C stops).
demo: $(STAMP)
	PYTHONPATH=. $(BIN)/countersign demo

# Refresh the README's screenshots from the browser's walk of its tour (needs /usr/bin/chromium).
screenshots: $(STAMP)
	COUNTERSIGN_SCREENSHOTS=docs/screenshots COUNTERSIGN_REQUIRE_BROWSER=1 $(BIN)/pytest -q -p no:xdist tests/sandbox/test_tour.py

# Every benchmark and chaos scenario, one at a time (about 40 minutes on 2 cores; needs the local
# PostgreSQL), then rewrites docs/performance.md and docs/reliability.md. Exit 1: a lost or
# duplicated effect was found; exit 2: a script is missing, crashed or ran out of time.
PROOF_FLAGS ?=
proof: $(STAMP)
	$(BIN)/python bench/proof.py $(PROOF_FLAGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
