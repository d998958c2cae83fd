# chanformer developer commands. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.chanformer-installed

.PHONY: setup demo test test-slow lint typecheck docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pin torch first: 2.13.0 is the CPU build on this machine's disk (a looser pin pulls CUDA wheels).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Optional: espeak-ng voices make the speech recipes' offline data; tests skip without it.
	command -v espeak-ng >/dev/null || (apt-get install -y -q espeak-ng >/dev/null 2>&1 || true)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/chanformer fit

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

# The docs site (mkdocs.yml), built strict: a broken link, anchor, nav entry or docstring fails.
# Notebooks are rendered as committed, not executed; nothing is written outside SITE_DIR.
SITE_DIR ?= site
docs: setup
	PYTHONDONTWRITEBYTECODE=1 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(SITE_DIR)

# Two pytest workers, one test file each at a time (files share fixtures and run folders); every
# worker runs one torch thread (conftest.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: lint typecheck docs
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m benchmarks run --device cpu --quick

clean:
	rm -rf runs lightning_logs .pytest_cache .mypy_cache .ruff_cache site
