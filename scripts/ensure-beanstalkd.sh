#!/usr/bin/env bash
# Make sure beanstalkd (and, for the TLS tests, stunnel and openssl) are on PATH: as root, install
# the Debian packages; otherwise print the exact command to run. A missing beanstalkd fails; a
# missing stunnel/openssl only warns (tests/test_tls.py then skips, and fails under CI=true).
# Used by `make test`, `make bench` and .ci/run.
set -euo pipefail
missing=()
command -v beanstalkd >/dev/null 2>&1 || missing+=(beanstalkd)
command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} = 0 ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "not found: ${missing[*]}: installing the Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v stunnel >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || \
    echo "stunnel/openssl not found: the TLS tests will skip. Install them with:" \
         "sudo apt-get install -y stunnel4 openssl" >&2
if command -v beanstalkd >/dev/null 2>&1; then
    exit 0
fi
echo "beanstalkd not found. Install it with:" >&2
echo "    sudo apt-get update && sudo apt-get install -y beanstalkd" >&2
exit 1
