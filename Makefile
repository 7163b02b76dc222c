# One command sets everything up and runs the pipeline (make run); one runs the tests (make test).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON := $(BIN)/python

# Everything Airflow writes stays inside the project.
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM := 2
# A laptop install: everyone who reaches the local UI is an admin, no password to look up.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS := True
export GX_ANALYTICS_ENABLED := false
export PATH := $(BIN):$(PATH)
FORECAST_CONFIG ?= config/demo.yaml
export FORECAST_CONFIG := $(abspath $(FORECAST_CONFIG))

# Demo data: 10 stores x 50 items over the 60 months ending with the latest complete month.
DEMO_SIZE ?= --stores 10 --items 50 --months 60 --seed 7

.PHONY: help setup run month ui test compose-test lint format typecheck docs tables-doc browser dominicks tourism benchmark benchmark-scale clean

help:
	@echo "make setup      .venv with the pinned dependencies and dev tools, and Airflow's metadata DB in .airflow"
	@echo "make run        set up .venv and Airflow, seed the demo data, run monthly_forecast, print a summary"
	@echo "make test       run the test suite (needs PostgreSQL and Redis for the production-profile tests)"
	@echo "make compose-test   build the image and run docker-compose.yml end to end (root; docs/deploy.md)"
	@echo "make month MONTH=YYYY-MM [FORECAST_CONFIG=...]   run monthly_forecast for one month"
	@echo "make ui         start Airflow (api-server, scheduler, dag-processor, triggerer) at http://localhost:8080"
	@echo "make dominicks  run the pipeline on Dominick's orange juice sales (real data), without and with plans"
	@echo "make tourism    run the pipeline on the tourism competition's 366 monthly series (real data)"
	@echo "make lint       ruff check (with Airflow's rules), ruff format --check and lint-imports (the layers)"
	@echo "make typecheck  mypy on include/"
	@echo "make format     reformat with ruff"
	@echo "make docs       build the docs site (mkdocs build --strict) into site/"
	@echo "make tables-doc regenerate docs/tables.md from forecasting/publishing/tables.py"
	@echo "make benchmark  time the pipeline's stages (SQLite) and publishing to PostgreSQL"
	@echo "make benchmark-scale   the stages at 10k..100k series, beside bare XGBoost and DuckDB"
	@echo "make browser    install Debian's chromium for the browser tests (they skip without it)"
	@echo "make clean      remove the data sets' outputs and .airflow (not .venv)"

setup: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.db

# uv installs the locked set in seconds. Without uv on the PATH, setup first installs uv itself
# from PyPI into .tools/ (seconds); plain pip, which takes minutes, is the last resort.
TOOLS := $(CURDIR)/.tools

$(TOOLS)/bin/uv:
	@py=$$(command -v python3.11 || command -v python3) && \
	$$py -m pip install --quiet --disable-pip-version-check --target $(TOOLS) uv >/dev/null 2>&1 \
		|| echo "(could not install uv into .tools/: falling back to pip)"

# A developer and CI get requirements-dev.lock: the runtime pins of requirements.lock (the
# production image's, kept identical by a constraint) plus the test, lint and docs tools.
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	@if ! command -v uv >/dev/null 2>&1; then $(MAKE) --no-print-directory $(TOOLS)/bin/uv; fi
	@echo "Installing the pinned dependencies (requirements-dev.lock) into $(VENV) ..."
	@uv=$$(command -v uv || { test -x $(TOOLS)/bin/uv && echo $(TOOLS)/bin/uv; }); \
	if [ -n "$$uv" ]; then \
		$$uv venv --quiet --allow-existing --python 3.11 $(VENV) && \
		VIRTUAL_ENV=$(CURDIR)/$(VENV) $$uv pip install --quiet -r requirements-dev.lock && \
		VIRTUAL_ENV=$(CURDIR)/$(VENV) $$uv pip install --quiet --no-deps -e . ; \
	else \
		py=$$(command -v python3.11 || command -v python3) && \
		$$py -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"' && \
		echo "(no uv: pip takes a few minutes)" && \
		$$py -m venv $(VENV) && \
		$(PYTHON) -m pip install --quiet -r requirements-dev.lock && \
		$(PYTHON) -m pip install --quiet --no-deps -e . ; \
	fi
	@touch $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	@echo "Preparing Airflow's metadata DB in $(AIRFLOW_HOME) ..."
	@mkdir -p $(AIRFLOW_HOME)
	@airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)

run: setup
	@start=$$(date +%s); \
	$(PYTHON) -m forecasting.datasets.synthetic $(DEMO_SIZE) && \
	$(PYTHON) -m forecasting.orchestration.localrun && \
	echo "make run took $$(( $$(date +%s) - start )) s"

month: setup
	$(PYTHON) -m forecasting.orchestration.localrun $(MONTH)

ui: setup
	airflow standalone

# Two workers (pytest-xdist), a test file at a time each: files share fixtures within, never
# state across (their own databases, Redis db, AIRFLOW_HOME and ports); the longest files first.
test: setup
	$(PYTHON) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The production stack as containers, alone (make test runs it too): a Docker daemon of its own,
# the image from the Dockerfile, docker-compose.yml up on the host's network (docs/deploy.md).
compose-test: setup
	$(PYTHON) -m pytest tests/e2e/test_compose_stack.py -s

# Debian's chromium for the browser test (installed if missing and possible; else that test skips).
browser:
	scripts/ensure_browser.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy

# The docs site (docs/, mkdocs.yml): --strict fails on a broken link, heading or nav entry.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Every table's columns, types and keys, from their one declaration (tests/publishing/test_tables.py checks it).
tables-doc: setup
	$(PYTHON) -m forecasting.publishing.tables_doc > docs/tables.md

# The same month without plans and with them (the realised promotions standing in for plans),
# then their holdout WAPEs side by side.
dominicks: setup
	$(PYTHON) -m forecasting.datasets.dominicks --url "sqlite:///$(CURDIR)/data/dominicks/source.db"
	FORECAST_CONFIG=$(CURDIR)/config/dominicks.yaml $(PYTHON) -m forecasting.orchestration.localrun 1992-09
	FORECAST_CONFIG=$(CURDIR)/config/dominicks_plans.yaml $(PYTHON) -m forecasting.orchestration.localrun 1992-09
	$(PYTHON) -m forecasting.orchestration.summary 1992-09 --compare-plans config/dominicks.yaml config/dominicks_plans.yaml

# Every series ends in December 2007 (forecasting.datasets.tourism aligns them there).
tourism: setup
	$(PYTHON) -m forecasting.datasets.tourism --url "sqlite:///$(CURDIR)/data/tourism/source.db"
	FORECAST_CONFIG=$(CURDIR)/config/tourism.yaml $(PYTHON) -m forecasting.orchestration.localrun 2007-12

benchmark: setup
	$(PYTHON) benchmarks/run_stages.py --repeat 3
	$(PYTHON) benchmarks/publish_speed.py --rows 200000 --repeat 5

# 10k to 100k series x 60 months, each stage in its own process, with the bare library calls
# beside train; then 10k series on a Dask LocalCluster of 2 workers (about 40 minutes in all).
benchmark-scale: setup
	$(PYTHON) benchmarks/run_stages.py --series 10000 25000 50000 100000 --repeat 1 --preloaded --json data/benchmark-scale.json
	$(PYTHON) benchmarks/run_stages.py --series 10000 --repeat 1 --dask 2 --no-bare --preloaded

clean:
	rm -rf data/demo data/demo_scenarios data/dominicks data/dominicks_plans data/tourism .airflow
