# pmjobs — two commands: `make run` starts the stack, `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test test-sqlite lint format install graphviz browser clean bench bench-latency bench-load bench-scorecard fuzz-nightly

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pmjobs needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# Graphviz `dot` draws the process maps.
graphviz:
	@command -v dot >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; \
	  else \
	    echo "Graphviz 'dot' not found: install it (Debian/Ubuntu: sudo apt-get install graphviz)"; exit 1; \
	  fi; }

# Headless Chromium renders the HTML report in the tests.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium not found: install it (Debian/Ubuntu: sudo apt-get install chromium)"; exit 1; \
	  fi; }

## Start Prefect (embedded database in $PMJOBS_HOME), the execution nodes and the API.
run: install graphviz
	$(VENV)/bin/pmjobs up

## The whole test suite (starts its own stack; PostgreSQL when PMJOBS_TEST_DATABASE_URL is set).
test: install graphviz browser
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## The embedded-database concurrency check, on SQLite even when CI sets PostgreSQL.
test-sqlite: install graphviz
	PMJOBS_TEST_DATABASE_URL= $(VENV)/bin/pytest tests/api/test_concurrency.py $(PYTEST_ARGS)

## Nightly: the schemathesis fuzzer with 1000 random cases per operation (CI runs 75).
fuzz-nightly: install graphviz
	PMJOBS_FUZZ_EXAMPLES=1000 $(VENV)/bin/pytest -m fuzz tests/fuzz $(PYTEST_ARGS)

## Benchmarks (bench/README.md): plain pm4py vs pmjobs (BPIC 2012, synthetic 1M and 5M), then
## the latency suite. BENCH_ARGS goes to compare.py, LATENCY_ARGS to latency.py.
bench: install graphviz
	$(PY) -m bench.compare $(BENCH_ARGS)
	$(PY) -m bench.latency $(LATENCY_ARGS)
	$(PY) -m bench.scorecard

## The targets of issue 4 against the newest results in bench/out/ (no new measurement).
bench-scorecard: install
	$(PY) -m bench.scorecard

bench-latency: install graphviz
	$(PY) -m bench.latency $(BENCH_ARGS)

## The load test (32 clients, 10 minutes by default); BENCH_ARGS="--minutes 1 --database-url ...".
bench-load: install graphviz
	$(PY) -m bench.load $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .pmjobs .pytest_cache
