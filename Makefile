# Two entry points for newcomers: `make demo` and `make test`. Both create the virtual
# environment (.venv) and install digest into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-reset test lint format clean

demo: $(VENV)/.installed
	$(BIN)/digest --config examples/digest.toml demo

test: $(VENV)/.installed
	$(BIN)/pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy digest

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo-reset:
	rm -rf examples/data examples/outbox examples/drafts examples/preview

clean: demo-reset
	rm -rf $(VENV)
