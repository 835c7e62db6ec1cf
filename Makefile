# identity-enricher: `make run` (the pipeline on the embedded stack) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test unit e2e lint fuzz bench bench-collector clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The embedded stack, one worker, the bundled sample; Ctrl-C stops everything.
# RUN_ONCE=1 exits after the sample has been processed.
run: install
	$(BIN)/enricher demo $(if $(filter-out 0,$(RUN_ONCE)),--once,)

# The whole suite against the real broker and Redis, then the linters.
test: install
	$(BIN)/python -m pytest
	$(MAKE) lint

unit: install
	$(BIN)/python -m pytest tests/enrichers tests/streams

e2e: install
	$(BIN)/python -m pytest tests/e2e

lint: install
	$(BIN)/ruff check streams enrichers tests bench
	$(BIN)/ruff format --check streams enrichers tests bench
	$(BIN)/mypy

# Coverage-guided fuzzing of the pure path (atheris) for FUZZ_SECONDS, seeded from the
# conformance scenarios; what it finds stays in tests/fuzz/corpus, crashes in tests/fuzz/crashes.
FUZZ_SECONDS ?= 60
fuzz: install
	rm -rf .fuzz-seeds && $(BIN)/python -m tests.fuzz.seed .fuzz-seeds
	$(BIN)/python -m tests.fuzz.fuzz_core tests/fuzz/corpus .fuzz-seeds \
		-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1

# Side by side on the embedded stack: plain aiokafka loop, naive Faust agent, the enricher
# (1 and 2 workers); writes bench/results/bench.json and bench.png. BENCH_EVENTS sets the size.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run

# One collector process under load from wrk (apt-get install wrk; else a Python load
# generator) on loopback; writes bench/results/collector.json. BENCH_SECONDS sets the length.
bench-collector: install
	$(BIN)/python -m bench.collector

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
