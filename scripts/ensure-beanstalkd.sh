#!/usr/bin/env bash
# Make sure beanstalkd is installed: install the Debian package when we may, else say how.
set -eu
command -v beanstalkd >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq beanstalkd >/dev/null
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq beanstalkd >/dev/null
else
    echo "beanstalkd not found: install it with: sudo apt-get install -y beanstalkd" >&2
    exit 1
fi
