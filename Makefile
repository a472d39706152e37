# Two commands matter: `make demo` and `make test`. Each creates .venv and
# installs fxsurgeon with everything it needs the first time.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-slow corpus bench bench-dry-run lint

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

# The corpus scoreboard (README "Scoreboard"): corpus/results.json and the README table.
CORPUS_ARGS ?=

corpus: $(STAMP)
	$(BIN)/python -m corpus $(CORPUS_ARGS)

# `make bench` (CPU) or `make bench BENCH_DEVICE=cuda`: benchmarks/README.md. Writes
# .benchmarks/$(BENCH_DEVICE).json, then the README's performance block from every
# .benchmarks/{cpu,cuda}.json there is; exits with pytest's status.
BENCH_DEVICE ?= cpu
BENCH_ARGS := -q -p no:cacheprovider --benchmark-columns=min,median,iqr,rounds

bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest benchmarks $(BENCH_ARGS) --device $(BENCH_DEVICE) \
		--benchmark-json=.benchmarks/$(BENCH_DEVICE).json $(PYTEST_ARGS); \
	status=$$?; \
	$(BIN)/python benchmarks/report.py $$(ls .benchmarks/cpu.json .benchmarks/cuda.json 2>/dev/null) \
		--readme README.md || status=$$?; \
	exit $$status

# The CUDA protocol's code path on the CPU (tiny ViT, a few steps); touches no README.
bench-dry-run: $(STAMP)
	$(BIN)/python -m pytest benchmarks $(BENCH_ARGS) --dry-run-cuda-protocol $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check fxsurgeon patterns tests benchmarks
	$(BIN)/ruff format --check fxsurgeon patterns
	$(BIN)/python -m mypy
