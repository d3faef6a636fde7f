PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install -q
TEST_DEPS = pytest "pytest-xdist>=3.2" PyYAML hypothesis
LINT_DEPS = ruff mypy cython-lint

.PHONY: build test lint lint-deps bench dist-check multi-python deps build-deps test-deps beanstalkd clean

build: build-deps
	BEANSTALKC_FAST_REQUIRE_EXTENSION=1 $(PYTHON) setup.py -q build_ext --inplace

# Cython and setuptools, only when missing. A Debian system Python refuses plain pip
# (PEP 668); retry with --break-system-packages there.
build-deps:
	@$(PYTHON) -c "import setuptools, Cython; assert int(Cython.__version__.split('.')[0]) >= 3" 2>/dev/null || \
	  $(PIP_INSTALL) "Cython>=3" setuptools || $(PIP_INSTALL) --break-system-packages "Cython>=3" setuptools

test-deps:
	@$(PYTHON) -c "import pytest, xdist, yaml, hypothesis" 2>/dev/null || \
	  $(PIP_INSTALL) $(TEST_DEPS) || $(PIP_INSTALL) --break-system-packages $(TEST_DEPS)

lint-deps:
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

bench: build beanstalkd
	$(PYTHON) benchmarks/bench.py

dist-check:
	PYTHON=$(PYTHON) bash scripts/dist-check.sh

# Wheel build + tests on every supported pyenv CPython (MULTI_PYTHON_ARGS=--server-free etc.)
multi-python:
	bash scripts/multi-python.sh $(MULTI_PYTHON_ARGS)

clean:
	rm -rf build dist wheelhouse *.egg-info src/*.c src/*.html \
	  beanstalkc_fast/*.so beanstalkc_fast/*.pyd .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
