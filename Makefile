# Quick start: `make demo` (install + main job on the embedded default), `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo demo-base test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m hoi_r1.demo

demo-base: install   # rebuilds the shipped checkpoints/tiny-qwen2_5_vl-grounding (docs/demo.md)
	$(BIN)/python -m hoi_r1.demo_base

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: install   # opt-in long tests (`-m slow`): the GRPO learning check
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache .hypothesis
