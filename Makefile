# modelseal — the two commands a newcomer runs are `make demo` and `make test`.
# Both install what they need first: system tools via .ci/install-system.sh (apt-get, as root),
# Python packages into .venv from the hash-pinned lock file.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help deps system wheels dev lint test demo bench docs clean

help:
	@echo "make demo   build, scan and judge examples/ end to end (installs what it needs)"
	@echo "make test   the whole test suite, lint included (installs what it needs)"
	@echo "make dev    only the Python virtualenv (.venv)"
	@echo "make lint   ruff and mypy"
	@echo "make bench  benchmarks (modelseal vs the raw tools)"
	@echo "make docs   regenerate the policy JSON Schema and README's policy reference from the models"

TEST_CACHE ?= /var/tmp/modelseal-test-cache

deps: system $(STAMP)

# The wheels the tool image installs (tests/test_tool_image.py builds it offline from them):
# downloaded here, with the other dependencies, so the tests themselves never reach the index.
wheels: $(STAMP)
	@$(BIN)/python .ci/wheelhouse.py --cache $(TEST_CACHE)/wheelhouse --prefetch >/dev/null

system:
	@bash .ci/install-system.sh

PIP := $(BIN)/pip install -q --disable-pip-version-check

$(STAMP): requirements-dev.lock requirements-torch.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements-dev.lock 2>&1 | grep -v 'is ignored: it is neither' || true
	$(PIP) --no-deps -e . 2>&1 | grep -v 'is ignored: it is neither' || true
	$(PIP) -r requirements-torch.txt 2>&1 | grep -v 'is ignored: it is neither' || true
	$(BIN)/python -c "import modelseal, pydantic, ruamel.yaml, rich, numpy, torch"
	@# The machine may set PYTHONDONTWRITEBYTECODE; compile the editable sources once so every
	@# `modelseal` start does not recompile them (stale files are simply recompiled in memory).
	$(BIN)/python -m compileall -q src
	touch $@

dev: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src
	$(BIN)/mypy src

test: deps wheels
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: deps
	$(BIN)/python examples/demo.py

# benchmarks/models.py creates .venv-bench (picklescan, modelscan) itself when it is missing.
bench: deps
	$(BIN)/python benchmarks/build.py
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/scan.py

# Both are generated from the pydantic policy models; the tests fail when either is stale.
docs: $(STAMP)
	$(BIN)/modelseal policy schema > src/modelseal/policy/policy.schema.json
	$(BIN)/python -m modelseal.policy.reference --write README.md

clean:
	rm -rf $(VENV) modelseal-out examples/out .pytest_cache .mypy_cache .ruff_cache
