PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install -q
TEST_DEPS = pytest PyYAML hypothesis

.PHONY: build test bench dist-check multi-python deps build-deps test-deps beanstalkd clean

build: build-deps
	BEANSTALKC_FAST_REQUIRE_EXTENSION=1 $(PYTHON) setup.py -q build_ext --inplace

# Cython and setuptools, only when missing. A Debian system Python refuses plain pip
# (PEP 668); retry with --break-system-packages there.
build-deps:
	@$(PYTHON) -c "import setuptools, Cython; assert int(Cython.__version__.split('.')[0]) >= 3" 2>/dev/null || \
	  $(PIP_INSTALL) "Cython>=3" setuptools || $(PIP_INSTALL) --break-system-packages "Cython>=3" setuptools

test-deps:
	@$(PYTHON) -c "import pytest, yaml, hypothesis" 2>/dev/null || \
	  $(PIP_INSTALL) $(TEST_DEPS) || $(PIP_INSTALL) --break-system-packages $(TEST_DEPS)
	@$(PYTHON) -c "import uvloop" 2>/dev/null || $(PIP_INSTALL) uvloop 2>/dev/null || \
	  $(PIP_INSTALL) --break-system-packages uvloop 2>/dev/null || \
	  echo "uvloop not installable here: the asyncio tests run on the default loop only"

beanstalkd:
	@bash scripts/ensure-beanstalkd.sh

deps: build-deps test-deps beanstalkd

test: build test-deps beanstalkd
	$(PYTHON) -m pytest -q tests

bench: build beanstalkd
	$(PYTHON) benchmarks/bench.py

dist-check:
	PYTHON=$(PYTHON) bash scripts/dist-check.sh

# Wheel build + tests on every supported pyenv CPython (MULTI_PYTHON_ARGS=--server-free etc.)
multi-python:
	bash scripts/multi-python.sh $(MULTI_PYTHON_ARGS)

clean:
	rm -rf build dist wheelhouse *.egg-info src/*.c src/*.html \
	  beanstalkc_fast/*.so beanstalkc_fast/*.pyd .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
