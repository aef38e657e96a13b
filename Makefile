# Quick start: `make demo` (set-up + one certified job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup tools demo test test-fast lint compose-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/budgetprune demo --out demo-out

# Debian's Chromium (the dashboard's browser test; Playwright drives it, no browser download)
# and docker-compose (validates docker-compose.yml offline). Tests that need them skip without.
tools:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	    || echo "could not install$$missing: tests that need them will be skipped"; \
	  else echo "not root: install$$missing to run every test"; fi; fi

# Two passes: the unit tests one process per core (pytest-xdist), then, one at a time, the tests
# that start the service's processes or assert on latencies measured here: a test running beside
# them would be in their timings. Both passes always run; either failing fails the target.
test: setup tools
	@rc=0; \
	$(PY) -m pytest -q -ra -n auto -m "not e2e and not timed" --durations=10 || rc=$$?; \
	$(PY) -m pytest -q -ra -m "e2e or timed" --durations=10 || rc=$$?; \
	exit $$rc

test-fast: setup
	$(PY) -m pytest -q -n auto -m "not slow and not e2e and not timed"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

compose-check: tools
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf demo-out var .pytest_cache
