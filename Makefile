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

# Every install is a complete, hash-locked set installed exactly: `--require-hashes --no-deps`
# never asks an index which versions exist, so a release there tomorrow cannot change or break
# it. The venv's stock pip only installs the lock (pip itself included, pinned); modelseal is
# then installed from this checkout with the locked build backend, without build isolation.
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check --no-input
LOCKED := --require-hashes --no-deps
TORCH  := $(VENV)/.torch

$(STAMP): requirements-dev.lock requirements-build.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(LOCKED) -r requirements-dev.lock -r requirements-build.lock
	$(PIP) --no-deps --no-build-isolation --no-index -e .
	$(BIN)/python -m pip check
	$(BIN)/python -c "import modelseal, pydantic, ruamel.yaml, rich, numpy"
	@# The machine may set PYTHONDONTWRITEBYTECODE; compile the editable sources once so every
	@# `modelseal` start does not recompile them (stale files are simply recompiled in memory).
	$(BIN)/python -m compileall -q src
	touch $@

# Test-only: real torch checkpoints for the scanner's benign corpus (make demo does not need it).
$(TORCH): $(STAMP) requirements-torch.lock
	$(PIP) $(LOCKED) -r requirements-torch.lock
	$(BIN)/python -c "import torch"
	touch $@

dev: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src
	$(BIN)/mypy src

test: deps $(TORCH) wheels
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: deps
	$(BIN)/python examples/demo.py

# benchmarks/models.py creates .venv-bench (picklescan, modelscan) itself when it is missing.
bench: deps $(TORCH)
	$(BIN)/python benchmarks/build.py
	$(BIN)/python benchmarks/cached_build.py
	$(BIN)/python benchmarks/rebuild.py
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/scan.py
	$(BIN)/python benchmarks/soak_scanner.py --rounds 3

# Both are generated from the pydantic policy models; the tests fail when either is stale.
docs: $(STAMP)
	$(BIN)/modelseal policy schema > src/modelseal/policy/policy.schema.json
	$(BIN)/python -m modelseal.policy.reference --write README.md

clean:
	rm -rf $(VENV) modelseal-out examples/out .pytest_cache .mypy_cache .ruff_cache
