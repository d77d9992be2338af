# opsmap — every target creates the project virtualenv (.venv) first if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DLT_PROJECT_DIR ?= $(CURDIR)
export RUNTIME__DLTHUB_TELEMETRY ?= false
export GX_ANALYTICS_ENABLED ?= false
BENCH_JSON ?= bench/results/latest.json

.PHONY: setup demo test test-slow ui lint format bench clean browser

setup: $(STAMP)

# uv installs the locked set in seconds; bytecode is compiled because this machine kind sets
# PYTHONDONTWRITEBYTECODE and imports without .pyc files are about twice as slow.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --compile-bytecode requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@mkdir -p $(DAGSTER_HOME)
	touch $(STAMP)

demo: setup  ## run the whole pipeline against the built-in sandbox and print the headline KPIs
	$(BIN)/opsmap run

test: setup browser  ## the test suite (what CI runs)
	$(BIN)/pytest -q -m "not slow"

# The report test renders the HTML report in headless Chromium, from Debian's packages. As root
# (CI, containers) it is installed when missing; otherwise install it yourself: apt-get install chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install Chromium (apt-get install chromium) for the report rendering test"; fi; }

test-slow: setup browser  ## the heavier variants too
	$(BIN)/pytest -q

ui: setup  ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: setup
	$(BIN)/ruff check pipelines tests
	$(BIN)/ruff format --check pipelines tests

format: setup
	$(BIN)/ruff format pipelines tests
	$(BIN)/ruff check --fix pipelines tests

bench: setup  ## benchmarks; writes a JSON summary to $(BENCH_JSON)
	BENCH_JSON=$(BENCH_JSON) $(BIN)/python -m pipelines.bench

clean:
	rm -rf warehouse/data .dagster_home
