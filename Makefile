# One venv, installed from the lock file. `make up` and `make test` install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install up test lint pytest lock clean bench-install web web-check

install: $(VENV)/.installed web

$(VENV)/.installed: pyproject.toml requirements.lock web/graphiql/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix web/graphiql --ignore-scripts --silent; \
	else \
		echo "npm not found: GraphiQL will load its scripts from unpkg.com"; \
	fi
	touch $@

# The web client (web/app): npm ci + vite build, rebuilt when its sources or schema.graphql
# change. Without npm the server still runs and `/` says how to build it.
WEB         := web/app
WEB_SOURCES := $(shell find $(WEB)/src -type f -not -path '*/generated/*' 2>/dev/null) \
	$(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/codegen.yml schema.graphql

web: $(WEB)/dist/index.html

$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix $(WEB) --ignore-scripts --no-audit --no-fund --silent; \
	else \
		echo "npm not found: skipping the web client (the server explains at / how to build it)"; \
	fi

$(WEB)/dist/index.html: $(WEB)/node_modules/.package-lock.json $(WEB_SOURCES)
	@if command -v npm >/dev/null 2>&1; then npm run build --prefix $(WEB) --silent; fi

# Types regenerated from schema.graphql, then tsc --noEmit and vitest: a server change
# that breaks the client fails here.
web-check: install
	@command -v npm >/dev/null 2>&1 || { echo "make test needs Node.js/npm for web/app"; exit 1; }
	npm run check --prefix $(WEB) --silent

up: install
	$(BIN)/foundry up

test: install lint web-check pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

pytest: install
	$(BIN)/pytest

# Refresh the lock after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^knowledge-foundry' > requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# A separate venv for bench/ (the LangChain + Chroma baseline): never installed into .venv.
# Refresh its lock with: .venv-bench/bin/pip freeze --exclude-editable | grep -v
# '^knowledge-foundry' > requirements-bench.lock
bench-install:
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --upgrade "pip>=24"
	@if [ -f requirements-bench.lock ]; then \
		.venv-bench/bin/pip install --quiet -c requirements-bench.lock -e ".[dev,bench]"; \
	else \
		.venv-bench/bin/pip install --quiet -c requirements.lock -e ".[dev,bench]"; \
	fi
