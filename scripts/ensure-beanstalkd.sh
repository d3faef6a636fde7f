#!/usr/bin/env bash
# Make sure beanstalkd is on PATH: as root, install the Debian package; otherwise print the
# exact command to run and fail. Used by `make test`, `make bench` and .ci/run.
set -euo pipefail
if command -v beanstalkd >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "beanstalkd not found: installing the Debian package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq beanstalkd >/dev/null
    command -v beanstalkd >/dev/null 2>&1 || { echo "beanstalkd still not on PATH" >&2; exit 1; }
    exit 0
fi
echo "beanstalkd not found. Install it with:" >&2
echo "    sudo apt-get update && sudo apt-get install -y beanstalkd" >&2
exit 1
