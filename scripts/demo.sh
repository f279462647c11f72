#!/usr/bin/env bash
# The demo command (README): makes .venv if needed, installs streamprep, and replays the bundled
# recording through the bundled SSD detector at 2 frames per second, printing one JSON line per frame.
# Extra arguments go to `streamprep run` (e.g. --mqtt mqtt://127.0.0.1:1883).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/streamprep run recordings/demo_720p.mp4 --fps 2 "$@"
