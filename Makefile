# The Python that builds, tests and builds the docs: a project virtual environment, $(VENV), made on
# first use from $(BASE_PYTHON) with --system-site-packages (what that Python already has is reused, not
# downloaded again; installs go into the venv, never into a system Python). `make test PYTHON=python3`
# uses that interpreter directly instead (the CI does), as before.
BASE_PYTHON ?= python3
VENV ?= .venv
ifeq ($(origin PYTHON),undefined)
PYTHON := $(VENV)/bin/python
USE_VENV := $(PYTHON)
endif
PIP_INSTALL = $(PYTHON) -m pip install -q
TEST_DEPS = pytest "pytest-xdist>=3.2" PyYAML hypothesis gevent eventlet
LINT_DEPS = ruff mypy cython-lint
DOCS_BUILD ?= docs/_build

.PHONY: build test lint lint-deps bench profile dist-check multi-python deps build-deps test-deps beanstalkd clean docs venv

venv: $(USE_VENV)

$(VENV)/bin/python:
	@$(BASE_PYTHON) -m venv --system-site-packages $(VENV) || { rm -rf $(VENV); \
	  echo "cannot make a virtual environment in $(VENV): on Debian/Ubuntu install python3-venv" \
	       "(apt-get install python3-venv), or use an interpreter directly: make test PYTHON=python3" >&2; \
	  exit 1; }

build: build-deps
	BEANSTALKC_FAST_REQUIRE_EXTENSION=1 $(PYTHON) setup.py -q build_ext --inplace

# Cython and setuptools, only when missing. A Debian system Python refuses plain pip
# (PEP 668); retry with --break-system-packages there.
# setuptools >= 77.0.3 reads the SPDX `license` of pyproject.toml.
build-deps: $(USE_VENV)
	@$(PYTHON) -c "import setuptools, Cython; assert int(Cython.__version__.split('.')[0]) >= 3; \
	  v = tuple(int(x) for x in setuptools.__version__.split('.')[:3]); assert v >= (77, 0, 3)" 2>/dev/null || \
	  $(PIP_INSTALL) "Cython>=3" "setuptools>=77.0.3" || \
	  $(PIP_INSTALL) --break-system-packages "Cython>=3" "setuptools>=77.0.3"

test-deps: $(USE_VENV)
	@$(PYTHON) -c "import pytest, xdist, yaml, hypothesis, gevent, eventlet" 2>/dev/null || \
	  $(PIP_INSTALL) $(TEST_DEPS) || $(PIP_INSTALL) --break-system-packages $(TEST_DEPS)
	@$(PYTHON) -c "import uvloop" 2>/dev/null || $(PIP_INSTALL) uvloop 2>/dev/null || \
	  $(PIP_INSTALL) --break-system-packages uvloop 2>/dev/null || \
	  echo "uvloop not installable here: the asyncio tests run on the default loop only"

lint-deps: $(USE_VENV)
	@$(PYTHON) -m ruff --version >/dev/null 2>&1 && $(PYTHON) -m mypy --version >/dev/null 2>&1 && \
	  $(PYTHON) -m cython_lint.cython_lint --version >/dev/null 2>&1 || \
	  $(PIP_INSTALL) $(LINT_DEPS) || $(PIP_INSTALL) --break-system-packages $(LINT_DEPS)

# ruff (pyproject [tool.ruff]), mypy --strict over the package ([tool.mypy]), cython-lint over
# the Cython core. Every check runs; the target fails if any of them failed.
lint: lint-deps
	@rc=0; \
	echo "--- ruff"; $(PYTHON) -m ruff check beanstalkc_fast tests scripts benchmarks setup.py || rc=1; \
	echo "--- mypy --strict"; $(PYTHON) -m mypy || rc=1; \
	echo "--- cython-lint"; $(PYTHON) -m cython_lint.cython_lint src || rc=1; \
	exit $$rc

beanstalkd:
	@bash scripts/ensure-beanstalkd.sh

deps: build-deps test-deps beanstalkd

# pytest-xdist workers, each with its own beanstalkd; 0 runs the suite in this process. Most
# of a test's wall time is a round trip to beanstalkd or a deliberate wait, so on 2 cores 3
# workers finish sooner than 2.
PYTEST_WORKERS ?= 3
test: build test-deps beanstalkd
	$(PYTHON) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal tests

# The documentation site (Sphinx + MyST, pinned in docs/requirements.txt) into $(DOCS_BUILD)/html;
# every warning is an error. It documents the API, which both cores share: the pure-Python one is used
# so that no build is needed.
docs: $(USE_VENV)
	@$(PIP_INSTALL) -r docs/requirements.txt || $(PIP_INSTALL) --break-system-packages -r docs/requirements.txt
	BEANSTALKC_FAST_PUREPYTHON=1 $(PYTHON) -m sphinx -W --keep-going -q -b html docs $(DOCS_BUILD)/html
	@echo "docs: $(DOCS_BUILD)/html/index.html"

# Builds the C reference client (cc -O2, benchmarks/build/), installs missing peers and matplotlib
# into .venv-bench/, runs the benchmark (~3 min). BENCH_ARGS=--quick for a smoke run; see
# benchmarks/README.md for the other options.
bench: build beanstalkd
	$(PYTHON) benchmarks/bench.py $(BENCH_ARGS)

# Instructions per operation under callgrind (valgrind), both cores. PROFILE_ARGS=-n 1000 etc.
profile: build beanstalkd
	$(PYTHON) benchmarks/instructions.py $(PROFILE_ARGS)

dist-check: $(USE_VENV)
	PYTHON=$(PYTHON) bash scripts/dist-check.sh

# Wheel build + tests on every supported pyenv CPython (MULTI_PYTHON_ARGS=--server-free etc.)
multi-python:
	bash scripts/multi-python.sh $(MULTI_PYTHON_ARGS)

clean:
	rm -rf build dist wheelhouse *.egg-info benchmarks/build src/*.c src/*.html $(DOCS_BUILD) \
	  beanstalkc_fast/*.so beanstalkc_fast/*.pyd .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
