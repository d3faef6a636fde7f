PYTHON ?= python3

.PHONY: build test bench deps clean

build:
	BEANSTALKC_FAST_REQUIRE_EXTENSION=1 $(PYTHON) setup.py -q build_ext --inplace

deps:
	@$(PYTHON) -c "import Cython, pytest, yaml, hypothesis" 2>/dev/null || \
	  $(PYTHON) -m pip install -q "Cython>=3" setuptools pytest PyYAML hypothesis
	@bash scripts/ensure-beanstalkd.sh

test: deps build
	$(PYTHON) -m pytest -q tests

bench: deps build
	$(PYTHON) benchmarks/bench.py

clean:
	rm -rf build dist *.egg-info src/*.c beanstalkc_fast/*.so .pytest_cache
