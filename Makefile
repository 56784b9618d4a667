# One venv, installed from the lock file. `make up` and `make test` install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install up test lint pytest lock clean

install: $(VENV)/.installed

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

up: install
	$(BIN)/foundry up

test: install lint pytest

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
