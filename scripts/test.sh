#!/usr/bin/env bash
# The test command (README, CI): makes .venv if needed, installs streamprep with its test extras,
# lints, type-checks and runs the test suite. Extra arguments go to pytest.
# Needs mosquitto on PATH or in /usr/sbin for the broker tests (sudo apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check .
.venv/bin/mypy streamprep
exec .venv/bin/python -m pytest "$@"
