# Two commands a new user needs (README, Quick start): `make demo` and `make test`.
# Each makes its own virtualenv (.venv) on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of PyTorch, from PyTorch's own index where it can be reached (an unpinned `torch`
# from PyPI is a multi-GB CUDA build). Where only PyPI answers, its build of the same version is used.
TORCH_PIN ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=
# Two pytest-xdist workers, each pinned to a CPU of its own (tests/conftest.py); each module's tests run
# on one worker in file order (loadscope), so module fixtures start once. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
DEMO_ARGS ?=

.PHONY: help venv demo test lint clean

help:
	@echo "make demo   - run the local subnet on embedded defaults (Ctrl-C stops it)"
	@echo "make test   - install what is needed and run the test suite"
	@echo "make lint   - ruff and the import layering (lint-imports)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --retries 1 --timeout 20 "$(TORCH_PIN)" --index-url "$(TORCH_INDEX)" || { \
	  echo "$(TORCH_INDEX) cannot be reached: installing $(TORCH_PIN) from PyPI (its CUDA build, several GB)" >&2; \
	  $(PY) -m pip install -q "$(TORCH_PIN)"; }
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/quasar local up $(DEMO_ARGS)

# pytest exits 5 when it collects no tests; that is a failure of the suite, say so plainly.
test: $(STAMP)
	bash scripts/test-prereqs.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .quasar .pytest_cache .ruff_cache
