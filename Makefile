# Two commands matter: `make demo` and `make test`. Each creates .venv and
# installs fxsurgeon with everything it needs the first time.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[tf,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fxsurgeon demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-json=.benchmarks/cpu.json $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check fxsurgeon patterns tests benchmarks
	$(BIN)/ruff format --check fxsurgeon patterns
