# The index of developer commands; each calls the project's own CLI. `make help` lists them.
VENV   ?= .venv
PYTHON ?= python3
SKIFF  := $(VENV)/bin/skiff
PYTEST := $(VENV)/bin/pytest

.DEFAULT_GOAL := help
.PHONY: help venv init install up down status demo simulate test test-compose test-unit test-integration lint bench clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## Create the CLI's virtualenv (.venv)

init: venv ## Write .env with fresh secrets (keeps existing ones)
	$(SKIFF) init

install: init ## Install every component natively into ~/.cache/skiff, and Debian packages as root (idempotent)
	$(SKIFF) install

up: install ## Start the platform and wait until every service is healthy
	$(SKIFF) up

demo: up ## Bring the platform up, then run the bracelet scenario end to end
	$(SKIFF) demo

simulate: venv ## Send Hungary patients to the prediction API for 60 s
	$(SKIFF) simulate --site hungary --rate 50 --duration 60

down: venv ## Stop the platform
	$(SKIFF) down

status: venv ## Show services, URLs and health
	$(SKIFF) status

test: init ## Run every test: unit, then integration against the real native stack
	$(SKIFF) install --for-tests
	$(PYTEST)

test-compose: init ## Build the images, start the Compose stack, run the tests marked compose against it
	$(SKIFF) up --compose --publish
	SKIFF_TEST_MODE=compose $(PYTEST) -m compose --durations=15

test-unit: venv ## Run the unit tests only (no services)
	$(PYTEST) -m unit

test-integration: install ## Run the integration tests only
	$(PYTEST) -m integration

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check src serving tests benchmarks dags
	$(VENV)/bin/mypy

BENCH_OPTS ?= --repeat 3

bench: install ## Run the benchmarks (prints figures and medians, never fails on time; restarts the stack)
	$(SKIFF) down
	$(VENV)/bin/python -m benchmarks stack_footprint
	$(SKIFF) up
	$(VENV)/bin/python -m benchmarks capture_throughput rest_scoring batch_scoring orchestration $(BENCH_OPTS)

clean: ## Remove the virtualenv (state: skiff reset; cache: ~/.cache/skiff)
	rm -rf $(VENV)
