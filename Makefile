# Two commands for a new user:  make demo  (run on the bundled sample)  and  make test  (every test).
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
STAMP := $(VENV)/.synced

.PHONY: demo test lint typecheck pytest env bench clean docs

$(STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shopseg demo --out out/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck pytest

docs: $(STAMP)
	$(VENV)/bin/python scripts/gen_docs.py

bench: $(STAMP)
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
