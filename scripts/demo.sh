#!/usr/bin/env bash
# The demo command (README): makes .venv and installs streamprep into it on first use (again only when
# pyproject.toml changes), then replays the bundled recording through the bundled SSD detector at 2 frames
# per second, printing one JSON line per frame on stdout. Extra arguments go to `streamprep run`
# (e.g. --mqtt mqtt://127.0.0.1:1883 publishes to a broker as well).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv ""
exec .venv/bin/streamprep run recordings/demo_720p.mp4 --fps 2 --out - "$@"
