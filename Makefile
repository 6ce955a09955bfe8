# The two commands a new user runs are `make demo` and `make test`; each bootstraps itself first.
SHELL := /bin/bash
VENV := .venv/bin
export HF_HUB_OFFLINE := 1
export ORT_DISABLE_TELEMETRY := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: bootstrap demo test lint bench up

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/conveyor demo

# Test files run in parallel (pytest-xdist), whole files per worker, each worker with its own servers and ports.
TEST_WORKERS ?= 3

test: bootstrap
	$(VENV)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/mypy

bench: bootstrap
	$(VENV)/python -m bench.imports
	$(VENV)/python -m bench.analysis
	$(VENV)/python -m bench.crawl
	$(VENV)/python -m bench.persona
	$(VENV)/python -m bench.video
	$(VENV)/python -m bench.codec
	scripts/bench-setup.sh
	$(VENV)/python -m bench.webhooks
	$(VENV)/python -m bench.chat

up: bootstrap
	$(VENV)/conveyor up
