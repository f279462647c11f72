#!/usr/bin/env bash
# The test command (README, CI): makes .venv and installs streamprep with its test and docs extras on first use
# (again only when pyproject.toml changes), lints, type-checks and runs the test suite. Extra arguments go
# to pytest. Needs mosquitto on PATH or in /usr/sbin for the broker tests (sudo apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv "test,docs"
.venv/bin/ruff check .
.venv/bin/mypy streamprep
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache  # the layers (.importlinter)
exec .venv/bin/python -m pytest "$@"
