# identity-enricher: `make run` (the pipeline on the embedded stack) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-pure unit e2e lint fuzz bench bench-collector clean

# The install compiles the core with mypyc (setup.py; ENRICHER_PURE=1 for pure Python), and
# builds it again when a compiled module's source changed since.
install: $(STAMP)
	@$(BIN)/python -m streams.build --check-stale || $(BIN)/python -m pip install --quiet --no-deps -e .

$(STAMP): pyproject.toml setup.py
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

# The pure Python build's smoke subset (the core's rules, the device record, the batch path
# against Redis) on the sources even where compiled modules are installed.
test-pure: install
	ENRICHER_TEST_BUILD=pure $(BIN)/python -m pytest -q tests/enrichers \
		tests/streams/test_device_record.py tests/streams/test_store.py \
		tests/e2e/test_regulation_race.py

e2e: install
	$(BIN)/python -m pytest tests/e2e

lint: install
	$(BIN)/ruff check streams enrichers tests bench setup.py
	$(BIN)/ruff format --check streams enrichers tests bench setup.py
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
	find enrichers streams -name '*.so' -delete; rm -f *__mypyc*.so
