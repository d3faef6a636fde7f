#!/usr/bin/env bash
# Build and test the wheel on every supported CPython found on this machine (pyenv).
#
# For each supported interpreter (the "Programming Language :: Python :: 3.X" classifiers in
# pyproject.toml), in a temporary directory and from a clean copy of HEAD (`git archive`, so
# uncommitted or ignored build outputs are never used; HEAD is resolved once at the start):
#   1. venv + `pip wheel --no-deps` with BEANSTALKC_FAST_REQUIRE_EXTENSION=1 (a cpXY wheel
#      containing the extension)
#   2. a fresh venv with only that wheel and the test deps (no Cython; gevent, eventlet and
#      uvloop best effort, prefer-binary (no long sdist builds): their tests skip when one
#      does not install)
#   3. IMPLEMENTATION == "cython" and beanstalkc_fast.__file__ inside that venv
#   4. pytest on the copied tests/, run outside the source tree (only the installed package is
#      importable); server tests run when beanstalkd is on PATH
# Then one summary line per version; exit 1 if any supported version failed.
#
# Usage: scripts/multi-python.sh [--server-free] [--unsupported] [VERSION|PYTHON ...]
#   VERSION          a pyenv version name (3.12.1) or an interpreter path; default: every
#                    supported version under `pyenv root`/versions
#   --server-free    hide beanstalkd from PATH so the server tests skip (env MULTI_PYTHON_SERVER_FREE=1)
#   --unsupported    also check that pip refuses the package on the unsupported pyenv versions
#                    (requires-python), with a pure-Python wheel, directly and via a file:// index
# Env: MULTI_PYTHON_PYTEST_ARGS (extra pytest args, shell words), MULTI_PYTHON_TIMEOUT (seconds
#      per pytest run, default 1200), MULTI_PYTHON_KEEP=1 (keep the work directory).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SERVER_FREE=${MULTI_PYTHON_SERVER_FREE:-0}
CHECK_UNSUPPORTED=0
ARGS=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
        --server-free) SERVER_FREE=1 ;;
        --unsupported) CHECK_UNSUPPORTED=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done
eval "PYTEST_ARGS=(${MULTI_PYTHON_PYTEST_ARGS:-})"  # shell words, quotes honoured
TIMEOUT=${MULTI_PYTHON_TIMEOUT:-1200}

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset BEANSTALKC_FAST_PUREPYTHON BEANSTALKC_FAST_NO_EXTENSION BEANSTALKC_FAST_EXPECT \
      BEANSTALKC_FAST_REQUIRE_EXTENSION PYTHONPATH PYTHONHOME VIRTUAL_ENV PIP_USER || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bcf-multi-python.XXXXXX")
if [ "${MULTI_PYTHON_KEEP:-}" = 1 ]; then
    trap 'echo "work directory kept: $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi

# Supported minors: the version classifiers; requires-python must start at the lowest one.
mapfile -t SUPPORTED < <(sed -n 's/^ *"Programming Language :: Python :: \(3\.[0-9][0-9]*\)",\{0,1\}$/\1/p' pyproject.toml)
REQUIRES=$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' pyproject.toml)
[ "${#SUPPORTED[@]}" -gt 0 ] || { echo "no 'Python :: 3.X' classifiers in pyproject.toml" >&2; exit 2; }
[ "$REQUIRES" = ">=${SUPPORTED[0]}" ] \
    || { echo "requires-python '$REQUIRES' does not match the lowest classifier ${SUPPORTED[0]}" >&2; exit 2; }
# HEAD is resolved once: every version tests the same commit even if HEAD moves meanwhile.
COMMIT_SHA=$(git rev-parse HEAD)
COMMIT=$(git rev-parse --short "$COMMIT_SHA")
echo "project at $COMMIT (git archive of HEAD; uncommitted changes are not tested)"
echo "requires-python $REQUIRES; supported: ${SUPPORTED[*]}"

is_supported() { local m; for m in "${SUPPORTED[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }
py_minor() { "$1" -c 'import sys; sys.stdout.write("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
py_full() { "$1" -c 'import sys, platform; sys.stdout.write(platform.python_implementation() + " " + platform.python_version())' 2>/dev/null; }

# Interpreters: "label<TAB>path".
CANDIDATES=()
PYENV_ROOT_DIR=$(pyenv root 2>/dev/null || true)
if [ "${#ARGS[@]}" -gt 0 ]; then
    for a in "${ARGS[@]}"; do
        if [ -n "$PYENV_ROOT_DIR" ] && [ -x "$PYENV_ROOT_DIR/versions/$a/bin/python" ]; then
            CANDIDATES+=("$a"$'\t'"$PYENV_ROOT_DIR/versions/$a/bin/python")
        elif p=$(pyenv prefix "$a" 2>/dev/null) && [ -x "$p/bin/python" ]; then
            CANDIDATES+=("$a"$'\t'"$p/bin/python")
        elif p=$(command -v "$a") ; then
            CANDIDATES+=("$a"$'\t'"$p")
        else
            echo "no interpreter for '$a'" >&2; exit 2
        fi
    done
elif [ -n "$PYENV_ROOT_DIR" ] && [ -d "$PYENV_ROOT_DIR/versions" ]; then
    while read -r v; do  # plain CPython versions only (no 3.13t, no virtualenvs, no pypy)
        [ -x "$PYENV_ROOT_DIR/versions/$v/bin/python" ] \
            && CANDIDATES+=("$v"$'\t'"$PYENV_ROOT_DIR/versions/$v/bin/python")
    done < <(ls "$PYENV_ROOT_DIR/versions" | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' | sort -t. -k1,1n -k2,2n -k3,3n)
else
    echo "pyenv not found: using python3.X from PATH"
    for m in "${SUPPORTED[@]}"; do
        p=$(command -v "python$m" || true)
        [ -n "$p" ] && CANDIDATES+=("$m"$'\t'"$p")
    done
fi

RUN=(); UNSUPPORTED=()
for c in "${CANDIDATES[@]}"; do
    py=${c#*$'\t'}
    m=$(py_minor "$py" || true)
    impl=$(py_full "$py" || true)
    if [ "${impl%% *}" = CPython ] && is_supported "$m"; then RUN+=("$c"); else UNSUPPORTED+=("$c"); fi
done
[ "${#RUN[@]}" -gt 0 ] || { echo "no supported interpreter found" >&2; exit 1; }
found=" "; for c in "${RUN[@]}"; do found+="$(py_minor "${c#*$'\t'}") "; done
for m in "${SUPPORTED[@]}"; do
    case "$found" in *" $m "*) ;; *) echo "note: no interpreter for supported Python $m" ;; esac
done

# PATH for the test runs: with --server-free, every PATH directory holding beanstalkd is replaced
# by a directory of symlinks to everything else in it (tests find it with shutil.which).
TEST_PATH=$PATH
if [ "$SERVER_FREE" = 1 ]; then
    newpath=()
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        [ -n "$dir" ] || continue
        if [ -e "$dir/beanstalkd" ]; then
            real=$(cd "$dir" && pwd -P)
            shadow="$WORK/path-without-beanstalkd${real//\//_}"
            if [ ! -d "$shadow" ]; then
                mkdir -p "$shadow"
                find "$real" -mindepth 1 -maxdepth 1 ! -name beanstalkd -exec ln -s -t "$shadow" {} +
            fi
            newpath+=("$shadow")
        else
            newpath+=("$dir")
        fi
    done
    TEST_PATH=$(IFS=:; echo "${newpath[*]}")
    if PATH=$TEST_PATH command -v beanstalkd >/dev/null 2>&1; then
        echo "could not hide beanstalkd from PATH" >&2; exit 1
    fi
    SERVER_NOTE="server-free: beanstalkd hidden from PATH, server tests skip"
elif command -v beanstalkd >/dev/null 2>&1; then
    SERVER_NOTE="beanstalkd at $(command -v beanstalkd): server tests run"
else
    SERVER_NOTE="no beanstalkd on PATH: server tests skip"
fi
echo "$SERVER_NOTE"

SUMMARY=(); FAILED=0
FIRST_BUILD_PY=""

record() { SUMMARY+=("$(printf '%-9s %-6s %-52s %-8s %s' "$@")"); }

run_version() {  # label python
    local label=$1 py=$2 d="$WORK/$1" minor tag wheel vpy impl result rc
    minor=$(py_minor "$py"); tag="cp${minor/./}"
    printf '\n=== %s (%s, %s)\n' "$label" "$(py_full "$py")" "$py"
    mkdir -p "$d/src" "$d/wheels" "$d/run"
    git -C "$ROOT" archive --format=tar "$COMMIT_SHA" | tar -x -C "$d/src"

    stage_fail() {  # stage log
        echo "--- $label: $1 failed; last lines of $(basename "$2"):"
        tail -n 40 "$2" | sed 's/^/    /'
        record "$label" FAIL "${wheel:--}" "${impl:--}" "failed at: $1"
        FAILED=1
    }

    "$py" -m venv "$d/venv-build" >"$d/venv.log" 2>&1 || { stage_fail "venv (build)" "$d/venv.log"; return 1; }
    echo "building the wheel (pip wheel --no-deps, extension required)"
    (cd "$d/src" && BEANSTALKC_FAST_REQUIRE_EXTENSION=1 \
        "$d/venv-build/bin/python" -m pip wheel --no-deps -w "$d/wheels" .) >"$d/wheel.log" 2>&1 \
        || { stage_fail "wheel build" "$d/wheel.log"; return 1; }
    wheel=$(cd "$d/wheels" && ls -- *.whl 2>/dev/null | head -n 1)
    [ -n "$wheel" ] || { stage_fail "wheel build (no .whl)" "$d/wheel.log"; return 1; }
    echo "built $wheel"
    case "$wheel" in
        *"-$tag-$tag-"*) ;;
        *) echo "wheel tag is not $tag" >"$d/tag.log"; stage_fail "wheel tag" "$d/tag.log"; return 1 ;;
    esac
    "$d/venv-build/bin/python" - "$d/wheels/$wheel" >"$d/contents.log" 2>&1 <<'EOF' || { stage_fail "wheel contents" "$d/contents.log"; return 1; }
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert any(re.match(r"beanstalkc_fast/_protocol\..*\.so$", n) for n in names), "no extension in the wheel"
assert "beanstalkc_fast/py.typed" in names, "no py.typed"
assert not [n for n in names if n.endswith((".pyx", ".c"))], "wheel ships sources"
EOF
    [ -n "$FIRST_BUILD_PY" ] || FIRST_BUILD_PY="$d/venv-build/bin/python"

    "$py" -m venv "$d/venv-test" >>"$d/venv.log" 2>&1 || { stage_fail "venv (test)" "$d/venv.log"; return 1; }
    vpy="$d/venv-test/bin/python"
    "$vpy" -m pip install -q "$d/wheels/$wheel" pytest "pytest-xdist>=3.2" PyYAML hypothesis >"$d/install.log" 2>&1 \
        || { stage_fail "install" "$d/install.log"; return 1; }
    # Optional test deps (the extras' "test" list): their tests skip with a reason when absent.
    local opt missing=()
    for opt in gevent eventlet uvloop; do
        "$vpy" -m pip install -q --prefer-binary "$opt" >>"$d/install.log" 2>&1 || missing+=("$opt")
    done
    [ "${#missing[@]}" = 0 ] || echo "not installable here (their tests skip): ${missing[*]}"
    if "$vpy" -c "import Cython" 2>/dev/null; then
        echo "Cython is installed in the test venv" >"$d/install.log"; stage_fail "install (Cython present)" "$d/install.log"; return 1
    fi

    cp -r "$d/src/tests" "$d/run/tests"
    printf '[pytest]\nmarkers =\n    slow: long runs\n    server: needs beanstalkd\n' >"$d/run/pytest.ini"
    (cd "$d/run" && BEANSTALKC_FAST_REQUIRE_EXTENSION=1 "$vpy" - "$d/venv-test/" "$ROOT/") >"$d/import.log" 2>&1 <<'EOF' \
        || { stage_fail "import" "$d/import.log"; return 1; }
import sys, beanstalkc_fast as b
venv, root = sys.argv[1], sys.argv[2]
assert b.__file__.startswith(venv), "not the installed package: %s" % b.__file__
assert not b.__file__.startswith(root), b.__file__
assert b.IMPLEMENTATION == "cython", b.IMPLEMENTATION
from beanstalkc_fast import _protocol
print("%s %s from %s" % (b.IMPLEMENTATION, b.__version__, b.__file__))
EOF
    impl=$(awk '{print $1}' "$d/import.log")
    echo "imported: $(cat "$d/import.log")"

    echo "pytest ($SERVER_NOTE)"
    set +e
    (cd "$d/run" && PATH="$TEST_PATH" BEANSTALKC_FAST_REQUIRE_EXTENSION=1 BEANSTALKC_FAST_EXPECT=cython \
        timeout --kill-after=30 "$TIMEOUT" \
        "$vpy" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} tests) 2>&1 \
        | tee "$d/pytest.log"
    rc=${PIPESTATUS[0]}
    set -e
    result=$(grep -E '[0-9]+ (passed|failed|errors?|skipped)|no tests ran' "$d/pytest.log" | tail -n 1 \
             | sed -E 's/^=+ //; s/ =+$//')
    [ "$rc" != 124 ] || result="timed out after ${TIMEOUT}s; ${result:-no result line}"
    if [ "$rc" = 0 ]; then
        record "$label" ok "$wheel" "$impl" "$result"
    else
        record "$label" FAIL "$wheel" "$impl" "pytest rc=$rc: ${result:-no result line}"
        FAILED=1
    fi
}

for c in "${RUN[@]}"; do
    run_version "${c%%$'\t'*}" "${c#*$'\t'}" || true
done

# ------------------------------------------------------------ unsupported versions (optional)
UNSUP_SUMMARY=()
if [ "$CHECK_UNSUPPORTED" = 1 ] && [ "${#UNSUPPORTED[@]}" -gt 0 ]; then
    printf '\n=== unsupported interpreters: pip must refuse the package (requires-python %s)\n' "$REQUIRES"
    if [ -z "$FIRST_BUILD_PY" ]; then
        echo "no build venv (every wheel build failed): skipping"
    else
        # A pure-Python wheel (py3-none-any), so only Requires-Python can stop the install.
        mkdir -p "$WORK/pure-src" "$WORK/pure" "$WORK/index/beanstalkc-fast"
        git -C "$ROOT" archive --format=tar "$COMMIT_SHA" | tar -x -C "$WORK/pure-src"
        (cd "$WORK/pure-src" && BEANSTALKC_FAST_NO_EXTENSION=1 \
            "$FIRST_BUILD_PY" -m pip wheel --no-deps -w "$WORK/pure" .) >"$WORK/pure.log" 2>&1 \
            || { tail -n 40 "$WORK/pure.log"; echo "pure-Python wheel build failed" >&2; exit 1; }
        PURE=$(cd "$WORK/pure" && ls -- *.whl)
        echo "pure-Python wheel: $PURE"
        # A PEP 503 index page, as PyPI serves it: the link carries data-requires-python.
        printf '<!DOCTYPE html><html><body><a href="../../pure/%s" data-requires-python="%s">%s</a></body></html>\n' \
            "$PURE" "$(printf '%s' "$REQUIRES" | sed 's/</\&lt;/g; s/>/\&gt;/g')" "$PURE" \
            >"$WORK/index/beanstalkc-fast/index.html"
        grep -q "data-requires-python=\"&gt;=" "$WORK/index/beanstalkc-fast/index.html" \
            || { echo "bad index page: $(cat "$WORK/index/beanstalkc-fast/index.html")" >&2; exit 1; }
        refusal='require[sd]? a different python|requires python|acceptable python versions|not in:? .?'"${REQUIRES//./\\.}"
        for c in "${UNSUPPORTED[@]}"; do
            label=${c%%$'\t'*}; py=${c#*$'\t'}
            verdicts=(); bad=0
            for how in file index; do
                t="$WORK/target-$label-$how"; log="$WORK/unsup-$label-$how.log"
                if [ "$how" = file ]; then
                    "$py" -m pip install --no-deps --no-index --no-cache-dir --target "$t" "$WORK/pure/$PURE" >"$log" 2>&1 && rc=0 || rc=$?
                else
                    "$py" -m pip install -v --no-deps --no-cache-dir --target "$t" \
                        --index-url "file://$WORK/index" beanstalkc_fast >"$log" 2>&1 && rc=0 || rc=$?
                fi
                msg=$(grep -iE "$refusal" "$log" | head -n 1 | sed -E "s/^ +//; s|file://$WORK/[^ ]*|<file>|g" | cut -c1-110 || true)
                if [ "$rc" = 0 ]; then
                    verdicts+=("$how: INSTALLED"); bad=1
                elif [ -n "$msg" ]; then
                    verdicts+=("$how: refused ($msg)")
                elif msg=$(grep -iE "none of the wheel's tags match|not a supported wheel" "$log" | head -n 1 \
                           | sed -E "s/^ +//; s|file://$WORK/[^ ]*|<file>|g" | cut -c1-110) && [ -n "$msg" ]; then  # py2: tag checked first
                    verdicts+=("$how: refused by wheel tag, not requires-python ($msg)")
                else
                    verdicts+=("$how: failed, not for requires-python ($(grep -iE 'error' "$log" | head -n 1 | cut -c1-100 || true))")
                fi
            done
            if [ "$bad" = 1 ]; then FAILED=1; st=FAIL; else st=ok; fi
            UNSUP_SUMMARY+=("$(printf '%-9s %-6s %s' "$label" "$st" "$(IFS='|'; echo "${verdicts[*]}" | sed 's/|/; /g')")")
            echo "${UNSUP_SUMMARY[-1]}"
        done
    fi
fi

printf '\n=== summary (%s, %s)\n' "$COMMIT" "$SERVER_NOTE"
printf '%-9s %-6s %-52s %-8s %s\n' version status wheel impl pytest
for line in "${SUMMARY[@]}"; do echo "$line"; done
if [ "${#UNSUP_SUMMARY[@]}" -gt 0 ]; then
    echo "unsupported (pip must refuse: requires-python $REQUIRES):"
    for line in "${UNSUP_SUMMARY[@]}"; do echo "$line"; done
elif [ "${#UNSUPPORTED[@]}" -gt 0 ]; then
    echo "not run (unsupported; --unsupported checks that pip refuses them): $(for c in "${UNSUPPORTED[@]}"; do printf '%s ' "${c%%$'\t'*}"; done)"
fi
if [ "$FAILED" = 0 ]; then echo "MULTI-PYTHON OK"; else echo "MULTI-PYTHON FAILED"; exit 1; fi
